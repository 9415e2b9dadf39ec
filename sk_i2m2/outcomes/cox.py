"""Cox survival: one log-risk per expert, the product of hazards, Breslow's baseline.

The outcome of :class:`~sk_i2m2.I2M2SurvivalAnalysis`. Its target is
scikit-survival's structured array (event indicator, time); the product of
the experts' hazards is the sum of their log-risks, so I2M2 is a Cox model
whose risk is intra experts + inter expert. Calibration fits a factor of
the summed log-risk on held-out rows, then Breslow's baseline cumulative
hazard on the training rows.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from sklearn.model_selection import KFold, StratifiedKFold

from .._registry import REGISTRY
from .._sizing import auto_batch_size, auto_n_folds, auto_n_folds_regression, is_small_cohort
from ..nn.cox import (
    CoxFoldEnsemble,
    ExpertsCoxLoss,
    ProductOfExpertsCoxLoss,
    combine_log_risk,
    cox_nll_sums,
)
from ..training.cox_net import StageNetSurvival
from ._base import Outcome, PredictionHead, StageOptions, validation_split

__all__ = [
    "CoxOutcome",
    "check_survival_target",
    "breslow_cumulative_hazard",
    "fit_cox_temperature",
    "import_sksurv",
]


@REGISTRY.register("outcome", "cox")
class CoxOutcome(Outcome):
    """Time-to-event targets with Cox experts.

    The stage nets train on ``(time, event)`` float rows; folds and the
    validation split are stratified on the event indicator (random without
    censoring); small cohorts train on whole risk sets (one batch).

    Parameters
    ----------
    ties : {"efron", "breslow"}, default="efron"
        Handling of tied event times in every partial likelihood.
    **params
        As for :class:`~sk_i2m2.outcomes.Outcome`.
    """

    parameters = (*Outcome.parameters, "ties")
    target_attributes = ("event_field_", "time_field_", "unique_times_", "cum_baseline_hazard_")

    def __init__(self, *, ties="efron", **params):
        super().__init__(**params)
        self.ties = ties

    def check_target(self, y, n_samples, sample_weight=None):
        event, time, event_field, time_field = check_survival_target(y, n_samples)
        attributes = {"event_field_": event_field, "time_field_": time_field}
        return attributes, np.column_stack([time, event]).astype(np.float32)

    def n_outputs(self, attributes):
        return 1

    def stage_options(self, attributes, y, sample_weight):
        return StageOptions(
            net=StageNetSurvival,
            criteria=(ExpertsCoxLoss, ProductOfExpertsCoxLoss),
            criterion_kwargs={"ties": self.ties},
        )

    def n_folds(self, y):
        event = y[:, 1].astype(np.int64)
        if event.all():  # no censoring: nothing to stratify on
            return auto_n_folds_regression(len(y), self.cv)
        return auto_n_folds(len(y), int(np.bincount(event).min()), self.cv)

    def splits(self, y, n_folds, seed, attributes):
        event = y[:, 1].astype(np.int64)
        censored = not event.all()
        if n_folds:
            folds = (StratifiedKFold if censored else KFold)(
                n_folds, shuffle=True, random_state=seed
            )
            return list(folds.split(np.zeros(len(y)), event))
        classes = np.array([False, True]) if censored else None
        return [validation_split(event, classes, self.validation_fraction, seed)]

    def auto_batch_size(self, n_train, optimizer):
        # Whole risk sets on small cohorts, where a mini-batch would hold few events.
        return n_train if is_small_cohort(n_train) else auto_batch_size(n_train)

    def fold_ensemble(self, modules):
        return CoxFoldEnsemble(modules)

    def combine(self, outputs, available=None):
        return combine_log_risk(outputs, available)

    def calibrate(self, held_out, options, training_rows):
        temperature = 1.0
        if self.calibration == "temperature" and held_out:
            temperature = fit_cox_temperature(held_out, self.ties)
        # Breslow's baseline from the fitted model's risks of the training rows.
        outputs, available, y, sample_weight = training_rows()
        log_risk = combine_log_risk(outputs.double(), available)[:, 0].numpy() * temperature
        unique_times, cum_baseline_hazard = breslow_cumulative_hazard(
            log_risk, y[:, 1].astype(bool), y[:, 0].astype(np.float64), sample_weight
        )
        return {
            "temperature_": temperature,
            "unique_times_": unique_times,
            "cum_baseline_hazard_": cum_baseline_hazard,
        }

    def prediction_head(self, attributes):
        return PredictionHead(_RiskScore(attributes["temperature_"]), ("risk_score",))


class _RiskScore(torch.nn.Module):
    """Stacked expert log-risks -> the calibrated risk score, as ``predict``."""

    def __init__(self, temperature):
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, outputs):
        return combine_log_risk(outputs)[:, 0] * self.temperature


_HOW = (
    "Build it with sksurv.util.Surv.from_arrays(event, time), or as "
    "np.array(list(zip(event, time)), dtype=[('event', bool), ('time', float)])."
)


def import_sksurv(module, what):
    """Import ``sksurv.<module>``; an ImportError that names the extra without it."""
    try:
        return importlib.import_module(f"sksurv.{module}")
    except ImportError:
        raise ImportError(
            f"{what} needs scikit-survival: pip install 'sk-i2m2[survival]' "
            "(or pip install scikit-survival)."
        ) from None


def check_survival_target(y, n_samples=None):
    """Event indicators, times and field names of a scikit-survival target.

    ``y`` is a structured array of two fields: the event indicator (boolean;
    0/1 numbers are accepted) and the time of the event or of censoring.
    The boolean field is the event, whatever the order; with no boolean
    field, the first is the event, as scikit-survival reads it.

    Returns
    -------
    event : bool ndarray of shape (n_samples,)
    time : float64 ndarray of shape (n_samples,)
    event_field, time_field : str

    Raises
    ------
    ValueError
        For anything else (saying how to build the array), a number of rows
        other than ``n_samples``, NaN or non-0/1 events, negative or
        non-finite times, or no event at all.
    """
    if y is None:
        raise ValueError(f"Survival analysis requires y, but y is None. {_HOW}")
    array = np.asarray(y) if not hasattr(y, "dtype") else y
    names = getattr(getattr(array, "dtype", None), "names", None)
    if not isinstance(array, np.ndarray) or names is None or len(names) != 2:
        shape = getattr(array, "shape", None)
        what = (
            f"a structured array with fields {list(names)}"
            if names
            else f"an array of shape {shape}"
            if shape is not None
            else type(y).__name__
        )
        raise ValueError(
            "y must be a structured array with two fields, the event indicator and the "
            f"time of the event or of censoring (scikit-survival's form); got {what}. {_HOW}"
        )
    if array.ndim != 1:
        raise ValueError(f"y must be 1-D (one record per sample); got shape {array.shape}.")
    booleans = [name for name in names if array.dtype[name].kind == "b"]
    event_field = booleans[0] if len(booleans) == 1 else names[0]
    time_field = names[1] if event_field == names[0] else names[0]
    raw_event, raw_time = array[event_field], array[time_field]
    if raw_event.dtype.kind not in "biuf" or raw_time.dtype.kind not in "biuf":
        raise ValueError(
            f"y's event field {event_field!r} must be boolean and its time field "
            f"{time_field!r} numeric; got dtypes {raw_event.dtype} and {raw_time.dtype}. {_HOW}"
        )
    if raw_event.dtype.kind == "f" and np.isnan(raw_event).any():
        raise ValueError(
            f"y's event field {event_field!r} has NaN at rows "
            f"{np.flatnonzero(np.isnan(raw_event))[:5].tolist()}; every sample needs an "
            "event indicator (True for an event, False for censoring)."
        )
    if raw_event.dtype.kind != "b" and not np.isin(raw_event, (0, 1)).all():
        raise ValueError(
            f"y's event field {event_field!r} must hold booleans (or 0/1); got values "
            f"{np.unique(raw_event)[:5].tolist()}."
        )
    event = raw_event.astype(bool)
    time = raw_time.astype(np.float64)
    if n_samples is not None and len(time) != n_samples:
        raise ValueError(f"y has {len(time)} samples but the modalities have {n_samples}.")
    bad = ~np.isfinite(time) | (time < 0)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(
            f"y's time field {time_field!r} must be finite and non-negative; rows "
            f"{rows[:5].tolist()} have {time[rows[:5]].tolist()}."
        )
    if not event.any():
        raise ValueError(
            f"y has no events: all {len(event)} samples are censored, so there is no risk "
            "ordering to learn."
        )
    return event, time, event_field, time_field


def breslow_cumulative_hazard(log_risk, event, time, sample_weight=None):
    """Breslow's baseline cumulative hazard at every distinct time of the training rows.

    Written here rather than taken from ``sksurv.linear_model.coxph.BreslowEstimator``
    because that takes no sample weights and fitting must not need
    scikit-survival. The increment at a time is the weighted number of
    events then over the weighted sum of ``exp(log_risk)`` of the samples
    still at risk.

    Returns
    -------
    unique_times : ndarray of shape (n_times,)
    cumulative_hazard : ndarray of shape (n_times,)
    """
    weight = np.ones(len(time)) if sample_weight is None else np.asarray(sample_weight, float)
    unique_times, group = np.unique(time, return_inverse=True)
    events = np.bincount(group, weights=weight * event, minlength=len(unique_times))
    # Shifted for exp; the shift cancels in the product with exp(log_risk) at prediction.
    shift = log_risk.max()
    risk = np.bincount(group, weights=weight * np.exp(log_risk - shift))
    at_risk = np.cumsum(risk[::-1])[::-1]
    return unique_times, np.cumsum(events / at_risk) * np.exp(-shift)


def fit_cox_temperature(held_out, ties):
    """The factor of the summed log-risk that maximises the held-out partial likelihood.

    ``held_out`` lists ``(expert_outputs, available, y, sample_weight)`` per
    model, as :meth:`CoxOutcome.calibrate` gets them; each model's rows form their
    own risk sets (its log-risks are on its own scale). The Cox loss is
    convex in the factor; it is searched in [0.01, 10]. 1.0 when the
    held-out rows hold no event.
    """
    parts = []
    for outputs, available, y, weight in held_out:
        log_risk = combine_log_risk(outputs.double(), available)[:, 0]
        parts.append((log_risk, y.double(), None if weight is None else weight.double()))
    if sum(float(y[:, 1].sum()) for _, y, _ in parts) == 0:
        return 1.0

    def loss(factor):
        total = 0.0
        for log_risk, y, weight in parts:
            nll, _ = cox_nll_sums(
                factor * log_risk.unsqueeze(0), y[:, 0], y[:, 1], None, weight, ties
            )
            total += float(nll[0])
        return total

    with torch.no_grad():
        result = minimize_scalar(loss, bounds=(0.01, 10.0), method="bounded")
    return float(result.x)
