"""Build the untrained I2M2 module from encoder and fusion specs."""

from __future__ import annotations

from torch import nn

from .._lazy import materialize
from .experts import INTER, Encoder, I2M2Module, InterExpert, IntraExpert, feature_size
from .frozen import features_key, frozen_features
from .standardize import Standardize, input_moments

__all__ = [
    "expert_plan",
    "build_module",
    "build_module_for",
    "cached_modalities",
    "build_frozen_encoders",
    "precompute_frozen",
]


def expert_plan(modalities, dependencies):
    """Expert names for ``dependencies`` ("both", "intra" or "inter").

    With a single modality every choice is the one unimodal expert.
    """
    if len(modalities) == 1:
        return list(modalities)
    intra = list(modalities) if dependencies in ("both", "intra") else []
    inter = [INTER] if dependencies in ("both", "inter") else []
    return intra + inter


def build_module(
    X,
    specs,
    fusion,
    n_classes,
    *,
    dependencies,
    standardize=True,
    inter_missing="null",
    modality_dropout=0.0,
    present=None,
    frozen=None,
):
    """The untrained experts of one model.

    Parameters
    ----------
    X : dict
        Modality -> training tensor ``(n, *sample_shape)`` or
        :class:`~sk_i2m2._lazy.LazyRows`, in the model's modality order.
        Input statistics are computed from its rows (where they live, e.g.
        on the GPU, or in chunks) and two rows are run through each encoder
        to learn its feature size.
    specs : dict
        Modality -> :class:`~sk_i2m2.encoders.EncoderSpec`.
    fusion : FusionSpec
        Fusion of the inter expert.
    n_classes : int
    dependencies : {"both", "intra", "inter"}
    standardize : bool, default=True
        Put a :class:`~sk_i2m2.nn.standardize.Standardize` in front of
        every encoder whose spec asks for it.
    inter_missing, modality_dropout
        As for :class:`~sk_i2m2.I2M2Classifier`.
    present : bool tensor of shape (n, n_modalities) or None
        Rows that have each modality; statistics use those rows only.
    frozen : dict or None, default=None
        Modality -> frozen encoder (:func:`build_frozen_encoders`) that
        runs in front of the experts; ``X`` holds its *features* for those
        modalities, which the experts read through an identity encoder
        (after standardisation, with ``standardize``).

    Returns
    -------
    I2M2Module
    """
    modalities = list(X)

    def observed(name):
        x = X[name]
        return x if present is None else x[present[:, modalities.index(name)]]

    frozen = dict(frozen or {})
    scalers = {}
    if standardize:
        for name, spec in specs.items():
            if name in frozen:  # features of a frozen encoder, standardised for the heads
                scalers[name] = input_moments(observed(name), (0,))
            elif spec.standardizes_input:
                sample_shape = tuple(X[name].shape[1:])
                axes = spec.feature_axes(sample_shape)
                scalers[name] = input_moments(observed(name), axes)

    def make_encoder(name, inter=False):
        scaler = Standardize(*scalers[name]) if name in scalers else None
        if name in frozen:
            return Encoder(nn.Identity(), scaler), int(X[name].shape[1])
        spec = specs[name]
        shape = tuple(X[name].shape[1:])
        body = spec.build_inter(shape, fusion) if inter else spec.build(shape)
        encoder = Encoder(body, scaler)
        example = materialize(observed(name)[:2])
        try:
            if standardize and spec.frozen:
                # A frozen encoder run on every batch (an augmented modality):
                # its features are standardised as the computed-once ones are.
                x = observed(name)
                features = frozen_features(encoder.to(x.device), x, x.device)
                encoder.cpu()
                encoder.body = nn.Sequential(body, Standardize(*input_moments(features, (0,))))
            return encoder, feature_size(encoder, example)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise ValueError(
                f"The encoder of modality {name!r} ({type(spec).__name__}) fails on "
                f"a batch of shape {tuple(example.shape)}: {exc}"
            ) from exc

    experts = {}
    for name in expert_plan(modalities, dependencies):
        if name == INTER:
            built = {m: make_encoder(m, inter=True) for m in modalities}
            sizes = [size for _, size in built.values()]
            experts[INTER] = InterExpert(
                {m: enc for m, (enc, _) in built.items()},
                sizes,
                fusion.build(sizes),
                n_classes,
                fusion.hidden_size,
                fusion.dropout,
                missing=inter_missing,
                modality_dropout=modality_dropout,
            )
        else:
            encoder, size = make_encoder(name)
            experts[name] = IntraExpert(name, modalities.index(name), encoder, size, n_classes)
    return I2M2Module(experts, frozen)


def cached_modalities(estimator):
    """Modalities of a fitted estimator whose encoder is frozen and runs once.

    A frozen encoder (``spec.frozen``) runs in front of the experts unless
    the modality is augmented: augmentation changes the input every batch,
    so that encoder then runs on every augmented batch inside the experts.
    """
    augmented = getattr(estimator, "augment", None) or {}
    return [m for m, spec in estimator.encoders_.items() if spec.frozen and m not in augmented]


def build_frozen_encoders(estimator, X, present=None):
    """The frozen encoder (input scaling + body) of each of ``frozen_modalities_``.

    ``X`` maps modality -> raw tensor, in the model's modality order; input
    statistics (with ``standardize`` and a spec that asks for them) use the
    rows that have the modality.
    """
    order, encoders = list(X), {}
    for name in estimator.frozen_modalities_:
        spec, x = estimator.encoders_[name], X[name]
        if present is not None:
            x = x[present[:, order.index(name)]]
        sample_shape = tuple(x.shape[1:])
        scaler = None
        if estimator.standardize and spec.standardizes_input:
            scaler = Standardize(*input_moments(x, spec.feature_axes(sample_shape)))
        encoders[name] = Encoder(spec.build(sample_shape), scaler)
    return encoders


def _features(estimator, name, encoder, x, device):
    try:
        return frozen_features(encoder, x, device)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(
            f"The encoder of modality {name!r} ({type(estimator.encoders_[name]).__name__}) "
            f"fails on a batch of shape {tuple(x[:2].shape)}: {exc}"
        ) from exc


def precompute_frozen(estimator, tensors, present=None):
    """The frozen encoders of a fit, and their features of every row.

    Builds :func:`build_frozen_encoders` on ``estimator.device_`` and runs
    each once over its modality's rows (batched, eval mode, no gradients).
    Returns ``(tensors, frozen)``: ``tensors`` (CPU) with each cached
    modality's raw input replaced by its features under
    :func:`~sk_i2m2.nn.frozen.features_key`, in the same order, and the
    encoders for :func:`build_module_for`.
    """
    device = estimator.device_
    frozen = build_frozen_encoders(estimator, tensors, present)
    frozen = {name: encoder.to(device) for name, encoder in frozen.items()}
    out = {}
    for name, x in tensors.items():
        if name in frozen:
            out[features_key(name)] = _features(estimator, name, frozen[name], x, device)
        else:
            out[name] = x
    return out, frozen


def build_module_for(estimator, X, present=None, frozen=None):
    """:func:`build_module` with the settings of a fitted I2M2 estimator.

    Reads ``encoders_``, ``fusion_``, the number of outputs per expert
    (``_n_outputs()``, e.g. the number of classes) and the parameters
    ``dependencies``, ``standardize``, ``inter_missing`` and
    ``modality_dropout``; the estimator's fit and its loading from disk
    build their modules through this one function.

    ``X`` holds raw inputs, except that with ``frozen`` (the frozen
    encoders whose features fit computed once) it holds those features under
    :func:`~sk_i2m2.nn.frozen.features_key`. Without ``frozen``, the frozen
    encoders are built here from the raw rows.
    """
    X = dict(X)
    if frozen is None:
        frozen = build_frozen_encoders(estimator, X, present)
        for name, encoder in frozen.items():
            X[name] = _features(estimator, name, encoder, X[name][:2], X[name].device)
    else:
        X = {name: X.get(features_key(name), X.get(name)) for name in estimator.modalities_}
    return build_module(
        X,
        estimator.encoders_,
        estimator.fusion_,
        estimator._n_outputs(),
        dependencies=estimator.dependencies,
        standardize=estimator.standardize,
        inter_missing=estimator.inter_missing,
        modality_dropout=estimator.modality_dropout,
        present=present,
        frozen=frozen,
    )
