"""Integrated gradients of a fitted I2M2 model, per input value, through Captum."""

from __future__ import annotations

from collections.abc import Mapping
from numbers import Integral

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from ._classifier import I2M2Classifier
from ._missing import check_samples_have_an_expert, warn_untrained_null
from ._validation import as_python, check_modalities
from .nn.experts import PRESENT
from .nn.product import combine

__all__ = ["integrated_gradients"]


def _target_indices(estimator, target, n_samples, predicted):
    """Class labels (one, or one per sample) as column indices of ``classes_``."""
    if target is None:
        return predicted
    if np.ndim(target) == 0:
        labels = np.full(n_samples, target, dtype=object)
    else:
        labels = np.asarray(target)
    if labels.shape != (n_samples,):
        raise ValueError(
            f"target must be one class label or one per sample ({n_samples}); "
            f"got shape {labels.shape}."
        )
    lookup = {label: i for i, label in enumerate(estimator.classes_)}
    for label in labels:
        if label not in lookup:
            raise ValueError(
                f"target {as_python(label)!r} is not a class of the model "
                f"(classes_: {[as_python(c) for c in estimator.classes_]})."
            )
    indices = [lookup[label] for label in labels]
    return torch.as_tensor(indices, dtype=torch.long)


def _baseline_tensors(baselines, tensors, device):
    """One baseline per modality: 0, or what ``baselines`` gives (broadcast to the batch)."""
    if baselines is None:
        baselines = {}
    if not isinstance(baselines, Mapping):
        raise TypeError(
            "baselines must be None or a dict of modality name -> number or array; "
            f"got {type(baselines).__name__}."
        )
    extra = [m for m in baselines if m not in tensors]
    if extra:
        raise ValueError(
            f"baselines has modality {extra[0]!r}, which the model does not have "
            f"(modalities_: {list(tensors)})."
        )
    out = []
    for name, x in tensors.items():
        value = torch.as_tensor(np.asarray(baselines.get(name, 0.0), dtype=np.float32))
        try:
            value = torch.broadcast_to(value, x.shape).contiguous()
        except RuntimeError:
            raise ValueError(
                f"Modality {name!r}: baseline of shape {tuple(value.shape)} does not "
                f"broadcast to the input's shape {tuple(x.shape)}; give a number, one "
                "sample's shape or the input's shape."
            ) from None
        out.append(value.to(device))
    return tuple(out)


def integrated_gradients(
    estimator, X, *, target=None, baselines=None, n_steps=50, internal_batch_size=None
):
    """Integrated gradients of the model's log-probability, per input value.

    Attributes the log-probability that the fitted model gives the
    ``target`` class, ``log p(target | x)`` (the product of all experts, at
    the model's temperature, as in ``predict_log_proba``), to each value of
    each modality: the input minus the baseline times the gradient averaged
    along the straight path from the baseline to the input (Sundararajan et
    al., 2017), computed with Captum's ``IntegratedGradients`` on
    ``estimator.module_``. Gradients flow through the model's own input
    standardisation, so attributions are per value of the raw input.

    Parameters
    ----------
    estimator : I2M2Classifier
        A fitted classifier. For a ``Pipeline``, pass its last step and the
        output of its other steps, ``pipe[:-1].transform(X)``: attributions
        are then per transformed feature.
    X : dict or ModalityDict
        As for :meth:`~sk_i2m2.I2M2Classifier.predict_proba`.
    target : class label, array-like of shape (n_samples,) or None, default=None
        The class whose log-probability is attributed, one for every sample
        or one per sample; ``None`` takes each sample's predicted class.
    baselines : dict or None, default=None
        Modality -> the reference input: a number, an array of one
        sample's shape or an array of the input's shape. Modalities not
        listed, and ``None``, use 0 (Captum's default). For standardised
        modalities a baseline of the training mean, e.g. ``{"tab":
        X_train["tab"].mean(axis=0)}``, stands for an average patient.
    n_steps : int, default=50
        Steps of the integral's approximation (Gauss-Legendre); more steps
        bring the attributions' sum closer to the exact difference.
    internal_batch_size : int or None, default=None
        Rows per forward pass, at least ``n_samples``: the ``n_samples *
        n_steps`` points along the paths are run in chunks of whole steps;
        ``None`` runs them all at once. Lower it if memory runs out.

    Returns
    -------
    attributions : dict
        Modality -> ndarray of float32 of the modality's input shape
        (``(n_samples, *sample_shape)``), for the modalities in ``X``. The
        attributions of a sample sum, over every value of every modality,
        to ``log p(target | x) - log p(target | baseline)``, up to the
        error of the approximation. A sample that misses a modality gets
        0 for all its values there: the expert of that modality abstains
        and no value of it moves the prediction.

    Raises
    ------
    ImportError
        When Captum is not installed: ``pip install 'sk-i2m2[explain]'``.

    Examples
    --------
    >>> import numpy as np
    >>> from sk_i2m2 import I2M2Classifier
    >>> from sk_i2m2.inspection import integrated_gradients
    >>> rng = np.random.RandomState(0)
    >>> X = {"a": rng.randn(120, 4), "b": rng.randn(120, 3)}
    >>> y = (X["a"][:, 0] > 0).astype(int)
    >>> clf = I2M2Classifier(max_epochs=5, early_stopping=False, random_state=0).fit(X, y)
    >>> attributions = integrated_gradients(clf, X)
    >>> attributions["a"].shape, attributions["b"].shape
    ((120, 4), (120, 3))
    """
    try:
        from captum.attr import IntegratedGradients
    except ImportError as error:
        raise ImportError(
            "integrated_gradients requires captum: pip install 'sk-i2m2[explain]'"
        ) from error
    if not isinstance(estimator, I2M2Classifier):
        raise TypeError(
            "integrated_gradients needs a fitted I2M2Classifier (for a Pipeline, pass "
            "pipe[-1] and pipe[:-1].transform(X)); got "
            f"{type(estimator).__name__}."
        )
    if not isinstance(n_steps, Integral) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive int; got {n_steps!r}.")
    check_is_fitted(estimator, "module_")
    tensors, _, present = check_modalities(X, fitted=estimator)
    if present is not None:
        check_samples_have_an_expert(
            present, estimator.modalities_, estimator.dependencies, estimator.inter_missing
        )
        warn_untrained_null(estimator, present)
    n_samples = len(next(iter(tensors.values())))
    device = estimator.device_
    module = estimator.module_.eval()
    names = list(tensors)
    inputs = tuple(tensors[m].to(device) for m in names)
    extra = () if present is None else (present.to(device),)

    def log_proba(*args):
        batch = dict(zip(names, args[: len(names)]))
        if extra:
            batch[PRESENT] = args[len(names)]
        return combine(module(**batch) / estimator.temperature_)

    with torch.no_grad():
        predicted = log_proba(*inputs, *extra).argmax(1).cpu()
    target = _target_indices(estimator, target, n_samples, predicted)
    attributions = IntegratedGradients(log_proba).attribute(
        inputs,
        baselines=_baseline_tensors(baselines, tensors, device),
        target=target.to(device),
        additional_forward_args=extra or None,
        n_steps=n_steps,
        internal_batch_size=internal_batch_size,
    )
    return {
        name: attribution.detach().cpu().numpy()
        for name, attribution in zip(names, attributions)
        if name in X
    }
