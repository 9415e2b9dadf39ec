"""Single-label classes: categorical experts, softmax product, temperature scaling.

The outcome of :class:`~sk_i2m2.I2M2Classifier` for a 1-D ``y``; a 2-D
``y`` of several label columns is the multilabel outcome
(:mod:`sk_i2m2.outcomes.labels`), which :meth:`ClassesOutcome.for_target`
picks.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedKFold
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import column_or_1d
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets

from .._registry import REGISTRY
from .._sizing import auto_n_folds
from .._validation import as_python
from ..nn.ensemble import FoldEnsemble
from ..nn.losses import ExpertsNLLLoss, ProductOfExpertsNLLLoss
from ..nn.product import class_log_proba, combine, contributions
from ..training.calibration import calibrate_product
from ..training.net import StageNet
from ._base import (
    LOG_LOSS_STOPPING_THRESHOLD,
    Outcome,
    PredictionHead,
    StageOptions,
    validation_split,
)
from .labels import LabelsOutcome, is_multilabel_target

__all__ = ["ClassesOutcome", "check_target", "class_weight_tensor"]


@REGISTRY.register("outcome", "classes")
class ClassesOutcome(Outcome):
    """Class labels of any type: one categorical expert per modality (and the inter expert).

    The product is the ``log_softmax`` of the summed logits; losses are the
    (class-weighted) negative log-likelihoods; folds and the validation
    split are stratified; the temperature divides the summed log-probabilities.

    Parameters
    ----------
    class_weight : dict, list of dict, "balanced" or None, default=None
        As for :class:`~sk_i2m2.I2M2Classifier`.
    **params
        As for :class:`~sk_i2m2.outcomes.Outcome`.
    """

    parameters = (*Outcome.parameters, "class_weight")
    target_attributes = ("classes_",)
    # A classifier saved before multilabel targets existed.
    saved_defaults = {"multilabel_": False}
    # One epoch (5 quasi-Newton iterations on all rows) without a 1 % fall
    # of an expert's held-out log loss (stage 1), or a 0.01 % fall of the
    # product's (stage 2), ends the stage: on the small-cohort sets the
    # further epochs of a patience of 3 rarely found a better model, and
    # the vector sets' fits take 25-42 % less time for the same accuracy
    # (``benchmarks/RESULTS.md``, "Small cohorts", its ``regime: patience
    # 3`` row). Multilabel fits keep 3: an expert's loss summed over the
    # labels falls slowly while one label still learns, and 1 epoch cost
    # subset accuracy there (``benchmarks/RESULTS.md``, "Small multilabel
    # cohorts", its ``patience 1`` row).
    full_batch_patience = 1

    def __init__(self, *, class_weight=None, **params):
        super().__init__(**params)
        self.class_weight = class_weight

    @classmethod
    def for_target(cls, y, **params):
        """:class:`ClassesOutcome`, or :class:`~sk_i2m2.outcomes.labels.LabelsOutcome` for a 2-D ``y``."""
        return (LabelsOutcome if is_multilabel_target(y) else cls)(**params)

    @classmethod
    def for_fitted(cls, attributes, **params):
        return (LabelsOutcome if attributes.get("multilabel_") else cls)(**params)

    def check_target(self, y, n_samples, sample_weight=None):
        classes, y_encoded = check_target(y, n_samples, self.estimator_name)
        if sample_weight is not None:
            totals = np.bincount(y_encoded, weights=sample_weight, minlength=len(classes))
            if not totals.all():
                absent = as_python(classes[np.flatnonzero(totals == 0)[0]])
                raise ValueError(
                    f"sample_weight gives class {absent!r} a total weight of 0: its rows "
                    "would be dropped and the model could never predict it. Give some of "
                    "its rows a positive weight, or leave the class out of y."
                )
        # Class codes as int64: the batches keep the dtype.
        return {"classes_": classes, "multilabel_": False}, y_encoded.astype(np.int64, copy=False)

    def n_outputs(self, attributes):
        return len(attributes["classes_"])

    def stage_options(self, attributes, y, sample_weight):
        classes = attributes["classes_"]
        return StageOptions(
            net=StageNet,
            criteria=(ExpertsNLLLoss, ProductOfExpertsNLLLoss),
            net_kwargs={"classes": list(range(len(classes)))},
            criterion_kwargs={
                "weight": class_weight_tensor(self.class_weight, classes, y, sample_weight)
            },
            stopping_threshold=LOG_LOSS_STOPPING_THRESHOLD,
        )

    def n_folds(self, y):
        return auto_n_folds(len(y), int(np.bincount(y).min()), self.cv)

    def splits(self, y, n_folds, seed, attributes):
        if n_folds:
            folds = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
            return list(folds.split(np.zeros(len(y)), y))
        return [validation_split(y, attributes["classes_"], self.validation_fraction, seed)]

    def fold_ensemble(self, modules):
        return FoldEnsemble(modules)

    def combine(self, outputs, available=None):
        return combine(outputs, available)

    def calibrate(self, held_out, options, training_rows):
        # Each expert's log-probabilities: their sum is the product's, up to
        # a constant per row.
        return calibrate_product(self.calibration, held_out, options, class_log_proba)

    def prediction_head(self, attributes):
        return PredictionHead(
            _ClassProbabilities(attributes["temperature_"]),
            ("probabilities",),
            {"classes": json.dumps(np.asarray(attributes["classes_"]).tolist())},
        )

    # The classifier's predictions

    def expert_proba(self, logits):
        """Each expert's class probabilities from its logits."""
        return torch.softmax(logits, dim=-1)

    def decide(self, proba, classes):
        """The predicted labels: the most probable class."""
        return classes[proba.argmax(axis=1)]

    def contributions(self, logits, expert_names, classes):
        """Each expert's term in the centred log-probability of the predicted class."""
        terms, predicted = contributions(logits)
        frame = pd.DataFrame(terms.T.numpy(), columns=list(expert_names))
        frame.attrs["predicted"] = classes[predicted.numpy()]
        return frame


class _ClassProbabilities(torch.nn.Module):
    """Stacked expert logits -> calibrated class probabilities, as ``predict_proba``."""

    def __init__(self, temperature):
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, logits):
        return combine(logits / self.temperature).exp()


def check_target(y, n_samples, estimator_name="I2M2Classifier"):
    """Validate class labels ``y`` and return ``(classes, y_encoded)``.

    ``y`` is read by scikit-learn's ``column_or_1d`` (a column vector is
    raveled with a ``DataConversionWarning``) and
    ``check_classification_targets`` (binary or multiclass labels of any
    type), then encoded by a ``LabelEncoder``.
    """
    if y is None:
        raise ValueError(f"{estimator_name} requires y to be passed, but the target y is None.")
    # asarray, not np.ndim: array-likes need only __array__ (scikit-learn checks that).
    array = np.asarray(y)
    if array.ndim == 2 and not _all_integral(array):
        raise ValueError(
            "y is one column of non-integer values. For multilabel targets pass an "
            "(n_samples, n_labels) array with at least 2 label columns; for one binary "
            "outcome pass its 0/1 labels."
        )
    y = column_or_1d(y, warn=True)
    if len(y) != n_samples:
        raise ValueError(f"y has {len(y)} samples but the modalities have {n_samples}.")
    if y.dtype.kind in "fO":
        missing = np.flatnonzero(pd.isna(y))
        if missing.size:
            raise ValueError(
                f"y has {missing.size} missing label(s) (NaN or None), first in sample "
                f"{missing[0]}; drop those samples."
            )
    check_classification_targets(y)
    encoder = LabelEncoder().fit(y)
    if len(encoder.classes_) < 2:
        raise ValueError(
            f"y contains only one class ({as_python(encoder.classes_[0])!r}); a "
            "classifier needs samples of at least 2 classes."
        )
    return encoder.classes_, encoder.transform(y)


def _all_integral(values):
    """Whether float ``values`` (NaN aside) are whole numbers; other dtypes count as labels."""
    if values.dtype.kind != "f":
        return True
    finite = values[np.isfinite(values)]
    return bool(np.all(finite == np.round(finite)))


def class_weight_tensor(class_weight, classes, y_encoded, sample_weight=None):
    """Loss weights of the classes for ``class_weight`` (``None`` without weights).

    ``"balanced"`` uses the class totals of ``sample_weight``.
    """
    if class_weight is None:
        return None
    if isinstance(class_weight, list):
        raise ValueError(
            "class_weight is a list, which is for multilabel y (one dict per label); "
            "for class labels pass a dict or 'balanced'."
        )
    if isinstance(class_weight, dict):
        unknown = [c for c in class_weight if c not in set(classes)]
        if unknown:
            raise ValueError(f"class_weight names class {unknown[0]!r}, not in y.")
    if isinstance(class_weight, str) and sample_weight is not None:
        # compute_class_weight's "balanced" rule, n / (n_classes * count),
        # with weighted totals (its sample_weight is newer than our floor).
        totals = np.bincount(y_encoded, weights=sample_weight, minlength=len(classes))
        if (totals == 0).any():
            raise ValueError("class_weight='balanced' needs a positive weight in every class.")
        weights = totals.sum() / (len(classes) * totals)
    else:
        weights = compute_class_weight(class_weight, classes=classes, y=classes[y_encoded])
    return torch.as_tensor(weights, dtype=torch.float32)
