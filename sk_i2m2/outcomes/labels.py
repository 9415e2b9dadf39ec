"""Multilabel targets: one Bernoulli expert per modality and label, product per label.

The outcome of :class:`~sk_i2m2.I2M2Classifier` for an ``(n_samples,
n_labels)`` indicator or soft-target ``y``: each expert gives one logit per
label, the product of Bernoulli experts is the sigmoid of their summed
logits, the losses are per-label binary cross-entropies, and one
temperature divides every label's summed logit.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.model_selection import KFold
from sklearn.utils import check_array

from .._registry import REGISTRY
from .._sizing import MULTILABEL_SMALL_COHORT, auto_n_folds
from ..nn.ensemble import MeanFoldEnsemble
from ..nn.losses import ExpertsBCELoss, ProductOfExpertsBCELoss
from ..nn.product import combine_labels
from ..training.calibration import calibrate_product
from ..training.net import StageNetMultilabel
from ._base import (
    LOG_LOSS_STOPPING_THRESHOLD,
    Outcome,
    PredictionHead,
    StageOptions,
    validation_split,
)

__all__ = [
    "LabelsOutcome",
    "check_multilabel_target",
    "is_multilabel_target",
    "label_weight_tensor",
]


@REGISTRY.register("outcome", "labels")
class LabelsOutcome(Outcome):
    """Multilabel targets: per-label Bernoulli experts and their per-label product.

    Folds and the validation split are random (rows are not stratified).

    Parameters
    ----------
    class_weight : list of dict, "balanced" or None, default=None
        Weights of each label's negatives and positives
        (:func:`label_weight_tensor`).
    **params
        As for :class:`~sk_i2m2.outcomes.Outcome`.
    """

    parameters = (*Outcome.parameters, "class_weight")
    target_attributes = ("classes_",)
    # Each label's product is its own: an expert that predicts one label
    # (a modality that carries it) is weighed on that label alone.
    expert_weights_per_output = True
    # Those weights need cross-fitted held-out rows (see the constant).
    small_cohort_size = MULTILABEL_SMALL_COHORT

    def __init__(self, *, class_weight=None, **params):
        super().__init__(**params)
        self.class_weight = class_weight

    def check_target(self, y, n_samples, sample_weight=None):
        classes, y = check_multilabel_target(y, n_samples)
        # float32 targets: the batches keep the dtype.
        return {"classes_": classes, "multilabel_": True}, y

    def n_outputs(self, attributes):
        return len(attributes["classes_"])

    def stage_options(self, attributes, y, sample_weight):
        weight = None
        if self.class_weight is not None:
            weight = label_weight_tensor(self.class_weight, y, sample_weight)
        return StageOptions(
            net=StageNetMultilabel,
            criteria=(ExpertsBCELoss, ProductOfExpertsBCELoss),
            net_kwargs={"classes": list(range(len(attributes["classes_"])))},
            criterion_kwargs={"weight": weight},
            stopping_threshold=LOG_LOSS_STOPPING_THRESHOLD,
        )

    def n_folds(self, y):
        # Every row counts as its own stratum: multilabel rows are not stratified.
        return auto_n_folds(len(y), len(y), self.cv, self.small_cohort_size)

    def splits(self, y, n_folds, seed, attributes):
        if n_folds:
            return list(KFold(n_folds, shuffle=True, random_state=seed).split(np.zeros(len(y))))
        return [validation_split(y, None, self.validation_fraction, seed)]

    def fold_ensemble(self, modules):
        # The normalised geometric mean of Bernoulli distributions has the
        # mean of their log-odds as its log-odds.
        return MeanFoldEnsemble(modules)

    def combine(self, outputs, available=None):
        return combine_labels(outputs, available)

    def calibrate(self, held_out, options, training_rows):
        # Each expert's per-label log-odds: their sum is the product's.
        return calibrate_product(
            self.calibration,
            held_out,
            options,
            lambda logits: logits,
            per_output=self.expert_weights_per_output,
        )

    def prediction_head(self, attributes):
        return PredictionHead(
            _LabelProbabilities(attributes["temperature_"]),
            ("probabilities",),
            {"classes": json.dumps(np.asarray(attributes["classes_"]).tolist())},
        )

    # The classifier's predictions

    def expert_proba(self, logits):
        """Each expert's probability of each label being positive."""
        return torch.sigmoid(logits)

    def decide(self, proba, classes):
        """0/1 indicators: 1 where the label's probability is above 0.5."""
        return (proba > 0.5).astype(int)

    def contributions(self, logits, expert_names, classes):
        """Each expert's log-odds of each label, ``(label, expert)`` columns."""
        n_experts, n_samples, n_labels = logits.shape
        terms = logits.permute(1, 2, 0).reshape(n_samples, n_labels * n_experts)
        columns = pd.MultiIndex.from_product([classes, expert_names], names=["label", "expert"])
        frame = pd.DataFrame(terms.numpy(), columns=columns)
        frame.attrs["predicted"] = (combine_labels(logits).exp() > 0.5).numpy().astype(int)
        return frame


class _LabelProbabilities(torch.nn.Module):
    """Stacked expert logits -> each label's calibrated probability, as ``predict_proba``."""

    def __init__(self, temperature):
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, logits):
        return torch.sigmoid((logits / self.temperature).sum(0))


def is_multilabel_target(y):
    """Whether ``y`` is 2-D with several columns: a multilabel target."""
    # asarray, not np.ndim: array-likes need only __array__ (scikit-learn checks that).
    shape = y.shape if sp.issparse(y) else np.asarray(y).shape
    return len(shape) == 2 and shape[1] != 1


def check_multilabel_target(y, n_samples):
    """Validate a multilabel ``y``; return ``(classes, y)``.

    ``y`` has shape ``(n_samples, n_labels)`` with ``n_labels >= 2``: 0/1 or
    bool indicators, or soft targets in [0, 1] (e.g. the share of annotators
    who saw a finding). ``classes`` is ``arange(n_labels)``, as for
    scikit-learn's ``MLPClassifier``; ``y`` comes back as float32.
    """
    try:
        y = check_array(y, accept_sparse=True, dtype=np.float64, input_name="y")
    except ValueError as exc:
        raise ValueError(
            f"A 2-D y is a multilabel target: numbers in [0, 1], one column per label. {exc}"
        ) from None
    y = y.toarray() if sp.issparse(y) else y
    if len(y) != n_samples:
        raise ValueError(f"y has {len(y)} samples but the modalities have {n_samples}.")
    if y.shape[1] < 2:
        raise ValueError(
            f"y has {y.shape[1]} label column(s); a multilabel target needs at least 2 "
            "(for one binary outcome pass its 0/1 labels as a 1-D array)."
        )
    outside = np.flatnonzero(((y < 0) | (y > 1)).any(0))
    if outside.size:
        column = y[:, outside[0]]
        raise ValueError(
            f"y has values outside [0, 1] in label column {outside[0]} (from "
            f"{column.min():g} to {column.max():g}). Multilabel targets are 0/1 "
            "indicators or soft targets in [0, 1]; several multiclass outputs are not "
            "supported."
        )
    return np.arange(y.shape[1]), y.astype(np.float32)


def label_weight_tensor(class_weight, y, sample_weight=None):
    """Per-label weights of negatives and positives, shape ``(2, n_labels)``, for multilabel ``y``.

    Each label is a binary outcome with its own class weights, as
    scikit-learn weighs the outputs of a multi-output target:
    ``"balanced"`` gives label ``l``'s positives ``n / (2 * n_pos)`` and its
    negatives ``n / (2 * n_neg)`` (counts weighted by ``sample_weight``; a
    soft target ``t`` counts ``t`` positive and ``1 - t`` negative); a
    label without positives or without negatives gets weights 1, as
    ``compute_class_weight`` gives a single class. A list holds one dict
    ``{0: w_neg, 1: w_pos}`` per label (missing keys weigh 1).
    """
    n_labels = y.shape[1]
    weights = np.ones((2, n_labels))
    if isinstance(class_weight, str) and class_weight == "balanced":
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        positives = w @ y.astype(np.float64)
        negatives = w.sum() - positives
        both = (positives > 0) & (negatives > 0)
        weights[0, both] = w.sum() / (2 * negatives[both])
        weights[1, both] = w.sum() / (2 * positives[both])
    elif isinstance(class_weight, list) and len(class_weight) == n_labels:
        for label, entry in enumerate(class_weight):
            if not isinstance(entry, dict) or set(entry) - {0, 1}:
                raise ValueError(
                    f"class_weight[{label}] must be a dict with keys 0 and/or 1 (the "
                    f"weights of label {label}'s negatives and positives); got {entry!r}."
                )
            for value, weight in entry.items():
                weights[value, label] = weight
    else:
        raise ValueError(
            "For multilabel y, class_weight is 'balanced' or a list of one dict "
            f"{{0: w_neg, 1: w_pos}} per label ({n_labels} labels); got {class_weight!r}."
        )
    return torch.as_tensor(weights, dtype=torch.float32)
