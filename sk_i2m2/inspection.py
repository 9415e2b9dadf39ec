"""Which dependencies drive a data set, and which inputs drive a model.

:func:`dependency_report` cross-validates one I2M2 model and scores, on the
same test rows, each of its experts, their products and a prior baseline;
:func:`plot_dependency_report` draws the result.
:func:`permutation_importance` measures what a fitted model loses when a
modality, or one feature, is shuffled across samples;
:func:`plot_permutation_importance` draws it; :func:`integrated_gradients`
attributes each prediction to the values of each input (needs Captum).
"""

from __future__ import annotations

import functools
import textwrap
from dataclasses import dataclass
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.dummy import DummyClassifier
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.model_selection import check_cv
from sklearn.pipeline import Pipeline

# Private scikit-learn helpers with no public equivalent: row indexing of
# any array-like (sklearn.utils.safe_indexing was removed) and the parameter
# validation of scikit-learn's own public functions.
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import HasMethods, StrOptions, validate_params
from sklearn.utils.parallel import Parallel, delayed

from ._attribution import integrated_gradients
from ._classifier import I2M2Classifier
from ._data import ModalityDict
from ._permutation import permutation_importance, plot_permutation_importance
from ._survival import I2M2SurvivalAnalysis
from ._survival_inspection import event_indicator, survival_fold
from ._validation import check_modality_mapping
from .nn.experts import INTER

__all__ = [
    "dependency_report",
    "plot_dependency_report",
    "permutation_importance",
    "plot_permutation_importance",
    "integrated_gradients",
]

INTRA = "intra"
I2M2 = "I2M2"
CHANCE = "chance"

KINDS = {
    "expert": "single-modality expert",
    INTRA: "product of intra experts",
    INTER: "inter expert",
    I2M2: "I2M2",
    CHANCE: "prior baseline",
}

_REASONS = {
    "inter-dominated": "the label lives in the interaction of modalities",
    "both contribute": "each modality informs the label and their interaction adds to it",
    "intra-dominated": "the modalities inform the label on their own; "
    "their interaction adds nothing measurable",
    "no dependency detected": "no model beats the prior baseline",
}


class _FixedProba(ClassifierMixin, BaseEstimator):
    """Serves stored class probabilities to scikit-learn scorers.

    ``X`` is a column of row numbers into ``proba``, so any classifier
    scorer (``accuracy``, ``roc_auc_ovr``, ``neg_log_loss``, ...) can score
    probabilities computed elsewhere.
    """

    def __init__(self, proba, classes):
        self.proba = proba
        self.classes = classes

    @property
    def classes_(self):
        return self.classes

    def predict_proba(self, X):
        return self.proba[np.asarray(X)[:, 0]]

    def predict(self, X):
        return self.classes[self.predict_proba(X).argmax(axis=1)]


def _check_estimator(estimator):
    """The estimator with ``dependencies="both"`` set on a fresh clone, and its report kind."""
    last = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    kind = next((k for cls, k in _REPORT_KINDS.items() if isinstance(last, cls)), None)
    if kind is None:
        what = (
            f"a Pipeline ending in {type(last).__name__}"
            if isinstance(estimator, Pipeline)
            else type(estimator).__name__
        )
        raise TypeError(
            "dependency_report needs an I2M2Classifier, an I2M2SurvivalAnalysis or a "
            f"Pipeline whose last step is one; got {what}."
        )
    estimator = clone(estimator)
    (estimator[-1] if isinstance(estimator, Pipeline) else estimator).set_params(
        dependencies="both"
    )
    return estimator, kind


def _scoring_name(scoring, default_score):
    if isinstance(scoring, str):
        return scoring
    if scoring is None:  # the estimator's default score
        return default_score
    return getattr(scoring, "__name__", "score")


def _entropy(proba):
    """Prediction entropy per row divided by ``log(n_classes)``: 0 certain, 1 uniform."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(proba > 0, proba * np.log(proba), 0.0)
    entropy = -terms.sum(axis=1) / np.log(proba.shape[1])
    entropy[np.isnan(proba).any(axis=1)] = np.nan
    return entropy


def _product(probas):
    """Normalised product of experts; an expert's NaN rows (unseen) are left out of it."""
    tiny = np.finfo(np.float32).tiny
    logs = [np.where(np.isnan(p), 0.0, np.log(np.maximum(p, tiny))) for p in probas]
    total = np.sum(logs, axis=0)
    product = np.exp(total - total.max(axis=1, keepdims=True))
    product /= product.sum(axis=1, keepdims=True)
    # A row that no expert saw has no product.
    product[np.all([np.isnan(p).any(axis=1) for p in probas], axis=0)] = np.nan
    return product


def _fold(estimator, X, y, train, test, scorer):
    """Fit ``estimator`` on ``train``; probabilities and scores of every model on ``test``."""
    X_train, X_test = X[train], X[test]
    y_train, y_test = _safe_indexing(y, train), _safe_indexing(y, test)
    estimator.fit(X_train, y_train)
    if isinstance(estimator, Pipeline):
        clf = estimator[-1]
        if len(estimator) > 1:
            X_test = estimator[:-1].transform(X_test)
    else:
        clf = estimator
    if INTER not in clf.expert_names_:
        raise ValueError(
            "dependency_report needs at least 2 modalities to separate intra- from "
            f"inter-modality dependencies; the classifier was fitted on "
            f"{clf.modalities_} (after the pipeline's transformers)."
        )

    # Stage-1 experts, each trained on its own loss: the same models as
    # fitting each modality's expert, and the inter expert, separately.
    experts = clf.expert_proba(X_test, stage="pretrain")
    probas = {m: experts[m] for m in clf.modalities_}
    probas[INTRA] = _product([experts[m] for m in clf.modalities_])
    probas[INTER] = experts[INTER]
    probas[I2M2] = clf.predict_proba(X_test)
    dummy = DummyClassifier(strategy="prior").fit(np.zeros((len(y_train), 1)), y_train)
    probas[CHANCE] = dummy.predict_proba(np.zeros((len(y_test), 1)))

    scores, labels, entropies = {}, {}, {}
    for name, proba in probas.items():
        classes = dummy.classes_ if name == CHANCE else clf.classes_
        seen = np.flatnonzero(~np.isnan(proba).any(axis=1))
        scores[name] = (
            scorer(_FixedProba(proba, classes), seen[:, None], _safe_indexing(y_test, seen))
            if len(seen)
            else np.nan
        )
        label = np.full(len(proba), None, dtype=object)
        label[seen] = classes[proba[seen].argmax(axis=1)]
        labels[name] = label
        entropies[name] = _entropy(proba)
    return scores, labels, entropies


def _agreement(a, b):
    """Share of rows, among those both models predicted, where they predict the same class."""
    both = np.array([u is not None and v is not None for u, v in zip(a, b)], dtype=bool)
    return float(np.mean(a[both] == b[both])) if both.any() else np.nan


def _above(diff, floor):
    """Whether paired per-fold differences are positive beyond ``floor`` and noise."""
    k = len(diff)
    se = np.std(diff, ddof=1) / np.sqrt(k) if k > 1 else 0.0
    return float(np.mean(diff)) > max(floor, 2 * se)


def _verdict(fold_scores, scoring_name):
    intra, inter, chance = (fold_scores[c].to_numpy() for c in (INTRA, INTER, CHANCE))
    inter_wins = _above(inter - intra, 0.01)
    intra_above = _above(intra - chance, 0.02)
    if inter_wins:
        label = "both contribute" if intra_above else "inter-dominated"
    elif intra_above or _above(inter - chance, 0.02):
        label = "intra-dominated"
    else:
        label = "no dependency detected"
    first, second = (INTER, INTRA) if inter_wins else (INTRA, INTER)
    mean = fold_scores.mean()
    verdict = (
        f"{label}: {first} {mean[first]:.3f} vs {second} {mean[second]:.3f} "
        f"{scoring_name} (chance {mean[CHANCE]:.3f}); {_REASONS[label]}"
    )
    return label, verdict


@dataclass(frozen=True)
class _ReportKind:
    """What :func:`dependency_report` does with the models of one estimator class."""

    #: ``fold(estimator, X, y, train, test, scorer)``: ``(scores, labels, entropies)``.
    fold: object
    #: ``y`` -> what the folds are stratified on.
    strata: object
    #: Name of the estimator's own ``score``, for ``scoring=None``.
    default_score: str
    #: Why a scorer named by string does not apply, or ``""`` where it does.
    scoring_refusal: str = ""


# The one place that tells the estimators apart: a classifier's models give
# class probabilities, a survival model's give risk scores
# (sk_i2m2._survival_inspection), whose folds are stratified on the event.
_REPORT_KINDS = {
    I2M2Classifier: _ReportKind(_fold, np.asarray, "accuracy"),
    I2M2SurvivalAnalysis: _ReportKind(
        functools.partial(survival_fold, names=(INTRA, I2M2, CHANCE)),
        event_indicator,
        "concordance_index",
        "a survival model is scored by scoring=None (Harrell's concordance index) or a "
        "callable scorer(estimator, X, y) that reads estimator.predict(X), the risk scores.",
    ),
}


@validate_params(
    {
        "estimator": [
            HasMethods(["fit", "predict_proba"]),
            HasMethods(["fit", "predict_survival_function"]),
        ],
        "X": "no_validation",  # check_modality_mapping names the problem
        "y": ["array-like"],
        "cv": ["cv_object"],
        "groups": ["array-like", None],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "n_jobs": [Integral, None],
    },
    prefer_skip_nested_validation=True,
)
def dependency_report(estimator, X, y, *, cv=5, groups=None, scoring="accuracy", n_jobs=None):
    """Cross-validated scores of I2M2's experts: which dependencies drive the data?

    In every fold one I2M2 model (``dependencies="both"``) is fitted on the
    training rows, and the following models are scored on the test rows:
    each modality's expert, the product of those experts (``intra``), the
    inter expert (``inter``), the I2M2 model itself and the class prior
    (``chance``). Comparing them tells whether the label is carried by each
    modality on its own, by the interaction of the modalities, or by both.

    Parameters
    ----------
    estimator : I2M2Classifier, I2M2SurvivalAnalysis or Pipeline
        An :class:`~sk_i2m2.I2M2Classifier` or
        :class:`~sk_i2m2.I2M2SurvivalAnalysis`, fitted or not, or a
        scikit-learn ``Pipeline`` whose last step is one (e.g. after a
        :class:`~sk_i2m2.PerModality`). It is cloned for every fold and left
        unchanged; the clones' model gets ``dependencies="both"``. For a
        survival model, each model of the report is a risk score (``intra``
        the sum of the intra experts' log-risks, ``chance`` one risk for
        all), the folds are stratified on the event, and ``agreement`` and
        ``mean_entropy`` are NaN.
    X : dict or ModalityDict
        Modality name -> array-like with samples on the first axis; at least
        2 modalities.
    y : array-like of shape (n_samples,)
        Class labels, or a survival model's structured array of events and times.
    cv : int, cross-validation generator or iterable, default=5
        Anything :func:`sklearn.model_selection.check_cv` accepts; an int
        means ``StratifiedKFold(cv)``.
    groups : array-like of shape (n_samples,) or None, default=None
        Group labels for splitters such as ``GroupKFold`` (e.g. patient ids,
        so every visit of a patient falls in the same fold).
    scoring : str, callable or None, default="accuracy"
        One classifier scorer, as in :func:`sklearn.model_selection.cross_val_score`
        (``"balanced_accuracy"``, ``"roc_auc_ovr"``, ``"neg_log_loss"``, ...).
        Higher is better for every scikit-learn scorer (losses are negated).
        For a survival model: ``None`` (Harrell's concordance index) or a
        callable ``scorer(estimator, X, y)`` that scores ``estimator.predict(X)``.
    n_jobs : int or None, default=None
        Folds fitted in parallel (``joblib``); ``None`` means 1.

    Returns
    -------
    report : pandas.DataFrame
        One row per model, in the order: each modality name, ``"intra"``,
        ``"inter"``, ``"I2M2"``, ``"chance"``. Columns:

        - ``kind``: ``"single-modality expert"``, ``"product of intra
          experts"``, ``"inter expert"``, ``"I2M2"`` or ``"prior baseline"``;
        - ``score_mean``, ``score_std``: the score over folds (standard
          deviation with ``ddof=0``, as in ``GridSearchCV.cv_results_``);
        - ``agreement``: share of test samples, pooled over folds, where the
          model predicts the same class as I2M2;
        - ``mean_entropy``: mean over test samples of the entropy of the
          predicted probabilities divided by ``log(n_classes)``: 0 is a
          certain prediction, 1 a uniform one.

        ``report.attrs`` holds ``"fold_scores"`` (DataFrame, folds x models),
        ``"agreement_matrix"`` (DataFrame, pairwise agreement of the
        experts: modalities and ``"inter"``, pooled over folds),
        ``"scoring"`` (the scorer's name), ``"dependency"`` (the verdict's
        label) and ``"verdict"`` (one line: the label and its reason).

    Notes
    -----
    The expert rows use the experts as trained in stage 1 (``pretrain_net_``),
    not as fine-tuned in stage 2. In stage 1 every expert is trained alone on
    its own loss, so each modality's expert is the unimodal model of that
    modality and the inter expert is the model with ``dependencies="inter"``;
    one fit per fold yields all of them, scored on the same rows. After
    stage 2 the experts are tuned to work as a product and no longer stand
    alone as classifiers. The rows:

    - *modality name*: that modality's expert alone. Above chance, the
      modality carries information about the label by itself.
    - ``intra``: the normalised product of the modalities' experts,
      equivalent to ``dependencies="intra"`` with ``finetune_epochs=0``.
      It models every intra-modality dependency and no interaction.
    - ``inter``: the inter expert, a classifier of all modalities fused; it
      can model their interaction.
    - ``I2M2``: the fitted model, the fine-tuned product of all experts.
    - ``chance``: ``DummyClassifier(strategy="prior")`` fitted on the
      training rows, scored with the same scorer.

    A test row whose modality is missing is scored, for that modality's
    expert, on the rows the expert saw; in ``intra`` such an expert is left
    out of the product for that row.

    The verdict compares paired per-fold scores over ``k`` folds. With
    ``d = inter - intra``, inter *beats* intra when ``mean(d)`` exceeds
    ``max(0.01, 2 * std(d, ddof=1) / sqrt(k))``; a model is *above chance*
    when its mean difference from ``chance`` exceeds ``max(0.02, 2 *``
    its standard error). Then:

    - inter beats intra, intra not above chance: ``"inter-dominated"``;
    - inter beats intra, intra above chance: ``"both contribute"``;
    - otherwise, intra or inter above chance: ``"intra-dominated"``;
    - nothing above chance: ``"no dependency detected"``.

    The thresholds are in the scorer's units (fit for accuracy-like scores
    in [0, 1]); a verdict from few folds or few samples is a hint, not a
    test.

    Examples
    --------
    >>> from sk_i2m2 import I2M2Classifier
    >>> from sk_i2m2.datasets import make_multimodal_classification
    >>> from sk_i2m2.inspection import dependency_report
    >>> X, y = make_multimodal_classification(
    ...     300, intra_strength=0.0, inter_strength=2.0, random_state=0)
    >>> report = dependency_report(
    ...     I2M2Classifier(max_epochs=5, random_state=0), X, y, cv=3)
    >>> list(report.index)
    ['m0', 'm1', 'intra', 'inter', 'I2M2', 'chance']
    >>> list(report.columns)
    ['kind', 'score_mean', 'score_std', 'agreement', 'mean_entropy']
    """
    base, kind = _check_estimator(estimator)
    check_modality_mapping(
        X,
        reserved={
            name: "it is also the name of a row of the report" for name in (INTRA, I2M2, CHANCE)
        },
    )
    modalities = list(X)
    if len(modalities) < 2:
        raise ValueError(
            "dependency_report needs at least 2 modalities to separate intra- from "
            f"inter-modality dependencies; X has {modalities}."
        )
    X = X if isinstance(X, ModalityDict) else ModalityDict(X)
    y = np.asarray(y)
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} samples but y has {len(y)}.")
    if kind.scoring_refusal and isinstance(scoring, str):
        raise ValueError(f"scoring={scoring!r} scores class predictions; {kind.scoring_refusal}")
    scorer = check_scoring(base, scoring)
    strata = kind.strata(y)
    cv = check_cv(cv, strata, classifier=True)

    folds = Parallel(n_jobs=n_jobs)(
        delayed(kind.fold)(clone(base), X, y, train, test, scorer)
        for train, test in cv.split(X, strata, groups)
    )
    scores, labels, entropies = zip(*folds)
    models = list(scores[0])
    fold_scores = pd.DataFrame(list(scores), columns=models)
    fold_scores.index.name = "fold"
    labels = {m: np.concatenate([fold[m] for fold in labels]) for m in models}
    entropies = {m: np.concatenate([fold[m] for fold in entropies]) for m in models}

    report = pd.DataFrame(
        {
            "kind": [KINDS.get(m, KINDS["expert"]) for m in models],
            "score_mean": fold_scores.mean().to_numpy(),
            "score_std": fold_scores.std(ddof=0).to_numpy(),
            "agreement": [_agreement(labels[m], labels[I2M2]) for m in models],
            # A survival model's risk scores have no entropy: NaN.
            "mean_entropy": [
                float(np.nanmean(entropies[m])) if not np.isnan(entropies[m]).all() else np.nan
                for m in models
            ],
        },
        index=pd.Index(models, name="model"),
    )
    experts = [m for m in models if m not in (INTRA, I2M2, CHANCE)]
    agreement_matrix = pd.DataFrame(
        [[_agreement(labels[a], labels[b]) for b in experts] for a in experts],
        index=experts,
        columns=experts,
    )
    scoring_name = _scoring_name(scoring, kind.default_score)
    label, verdict = _verdict(fold_scores, scoring_name)
    report.attrs.update(
        fold_scores=fold_scores,
        agreement_matrix=agreement_matrix,
        scoring=scoring_name,
        dependency=label,
        verdict=verdict,
    )
    return report


@validate_params(
    {
        "report": [pd.DataFrame],
        "ax": "no_validation",  # a matplotlib Axes; matplotlib is optional
    },
    prefer_skip_nested_validation=True,
)
def plot_dependency_report(report, *, ax=None):
    """Bar chart of a :func:`dependency_report`, titled with its verdict.

    Parameters
    ----------
    report : pandas.DataFrame
        Output of :func:`dependency_report`.
    ax : matplotlib Axes or None, default=None
        Where to draw; ``None`` draws on a new figure.

    Returns
    -------
    ax : matplotlib Axes
        One horizontal bar per model (mean score, standard deviation over
        folds as error bar), coloured by kind; the prior baseline is the
        dashed line.
    """
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError(
            "plot_dependency_report requires matplotlib: pip install 'sk-i2m2[plot]'"
        ) from error

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.45 * len(report) + 2), layout="constrained")
    bars = report.drop(index=CHANCE)
    kinds = list(dict.fromkeys(bars["kind"]))
    colors = dict(zip(kinds, plt.get_cmap("tab10").colors))
    positions = np.arange(len(bars))
    ax.barh(
        positions,
        bars["score_mean"],
        xerr=bars["score_std"],
        capsize=3,
        color=[colors[k] for k in bars["kind"]],
    )
    ax.set_yticks(positions, labels=list(bars.index))
    ax.invert_yaxis()  # models top to bottom in the report's order
    chance_line = ax.axvline(report.loc[CHANCE, "score_mean"], color="grey", linestyle="--")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[k]) for k in kinds]
    # Below the axes, where it hides no bar.
    ax.legend(
        handles + [chance_line],
        kinds + [KINDS[CHANCE]],
        fontsize=8,
        ncol=3,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.18),
        frameon=False,
    )
    ax.set_xlabel(report.attrs.get("scoring", "score"))
    ax.set_title(textwrap.fill(report.attrs.get("verdict", ""), 60), fontsize=9)
    return ax
