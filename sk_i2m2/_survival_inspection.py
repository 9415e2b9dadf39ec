"""The survival side of :func:`~sk_i2m2.inspection.dependency_report`: risks of each model."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing

from .nn.experts import INTER
from .outcomes.cox import check_survival_target, import_sksurv

__all__ = ["FixedRisk", "survival_fold", "event_indicator"]


class FixedRisk(BaseEstimator):
    """Serves stored risk scores to scorers: ``X`` is a column of row numbers into ``risk``.

    Its ``score`` is Harrell's concordance index, as for
    :class:`~sk_i2m2.I2M2SurvivalAnalysis`, so ``scoring=None`` scores
    every model of the report alike; a callable scorer may call ``predict``.
    """

    def __init__(self, risk):
        self.risk = risk

    def predict(self, X):
        return self.risk[np.asarray(X)[:, 0]]

    def score(self, X, y):
        metrics = import_sksurv("metrics", "dependency_report of a survival model")
        event, time, _, _ = check_survival_target(y)
        return metrics.concordance_index_censored(event, time, self.predict(X))[0]


def event_indicator(y):
    """The event indicators of a survival target (what the folds are stratified on)."""
    return check_survival_target(y)[0]


def survival_fold(estimator, X, y, train, test, scorer, names):
    """Fit ``estimator`` on ``train``; the score of every model on ``test``.

    ``names`` are the report's row names ``(intra, I2M2, chance)``. Returns
    ``(scores, labels, entropies)`` as the classifier's fold does: a risk
    score has no predicted class nor entropy, so those are empty (None, NaN).
    """
    intra, i2m2, chance = names
    X_train, X_test = X[train], X[test]
    y_train, y_test = _safe_indexing(y, train), _safe_indexing(y, test)
    estimator.fit(X_train, y_train)
    model = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    if isinstance(estimator, Pipeline) and len(estimator) > 1:
        X_test = estimator[:-1].transform(X_test)
    if INTER not in model.expert_names_:
        raise ValueError(
            "dependency_report needs at least 2 modalities to separate intra- from "
            f"inter-modality dependencies; the model was fitted on {model.modalities_} "
            "(after the pipeline's transformers)."
        )
    # Stage-1 experts, each trained alone: the unimodal and inter Cox models.
    experts = model.expert_predict(X_test, stage="pretrain")
    risks = {m: experts[m] for m in model.modalities_}
    intra_terms = np.array([experts[m] for m in model.modalities_])
    # The product of the intra experts' hazards: the sum of the log-risks they give.
    risks[intra] = np.where(np.isnan(intra_terms).all(0), np.nan, np.nansum(intra_terms, axis=0))
    risks[INTER] = experts[INTER]
    risks[i2m2] = model.predict(X_test)
    risks[chance] = np.zeros(len(y_test))  # one risk for all: concordance 0.5

    scores, labels, entropies = {}, {}, {}
    for name, risk in risks.items():
        seen = np.flatnonzero(~np.isnan(risk))
        y_seen = _safe_indexing(y_test, seen)
        scores[name] = (
            scorer(FixedRisk(risk), seen[:, None], y_seen)
            if len(seen) and y_seen[model.event_field_].any()
            else np.nan
        )
        labels[name] = np.full(len(risk), None, dtype=object)
        entropies[name] = np.full(len(risk), np.nan)
    return scores, labels, entropies
