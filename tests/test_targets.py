"""Sample weights in fit, and multilabel targets."""

import numpy as np
import pytest
import sklearn
import torch
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from sk_i2m2 import I2M2Classifier, ModalityDict, PerModality
from sk_i2m2.nn.losses import ExpertsNLLLoss, ProductOfExpertsNLLLoss
from sk_i2m2.training.calibration import fit_temperature

FAST = dict(max_epochs=2, random_state=0)


def _data(n=80, seed=0):
    rng = np.random.RandomState(seed)
    X = {"a": rng.randn(n, 4), "b": rng.randn(n, 3)}
    y = (X["a"][:, 0] + X["b"][:, 0] > 0).astype(int)
    return X, y


def _rows(X, rows):
    return {m: v[rows] for m, v in X.items()}


# ----------------------------------------------------------------------
# sample_weight


@pytest.mark.parametrize("cv", [None, 2])
def test_zero_weight_gives_exactly_the_model_fitted_without_the_row(cv):
    # Exact in every setting, early stopping and inner folds included: rows
    # of weight 0 are dropped before the validation split, so both fits see
    # the same rows, splits, batches and random streams.
    X, y = _data()
    weight = np.ones(len(y))
    weight[::5] = 0
    keep = weight > 0
    weighted = I2M2Classifier(cv=cv, **FAST).fit(X, y, sample_weight=weight)
    dropped = I2M2Classifier(cv=cv, **FAST).fit(_rows(X, keep), y[keep])
    assert_array_equal(weighted.predict_proba(X), dropped.predict_proba(X))
    assert weighted.temperature_ == dropped.temperature_


def test_weights_count_by_their_ratios_and_move_the_model():
    rng = np.random.RandomState(1)
    X = {"a": rng.randn(80, 3), "b": rng.randn(80, 2)}
    y = rng.randint(0, 2, 80)  # noise: the prior is all there is to learn
    weight = np.where(y == 1, 5.0, 1.0)
    params = dict(max_epochs=4, lr=1e-2, random_state=0)
    unweighted = I2M2Classifier(**params).fit(X, y)
    weighted = I2M2Classifier(**params).fit(X, y, sample_weight=weight)
    doubled = I2M2Classifier(**params).fit(X, y, sample_weight=2 * weight)
    # Every loss is sum(w * loss) / sum(w); doubling is exact in floating point.
    assert_array_equal(weighted.predict_proba(X), doubled.predict_proba(X))
    assert weighted.predict_proba(X)[:, 1].mean() > unweighted.predict_proba(X)[:, 1].mean() + 0.05


def test_weighted_criteria_and_temperature_ignore_rows_of_weight_zero():
    torch.manual_seed(0)
    logits, y = torch.randn(2, 8, 3), torch.randint(0, 3, (8,))
    weight = torch.tensor([1.0, 0.0, 2.0, 0.5, 0.0, 1.0, 3.0, 1.0])
    seen = weight > 0
    available = torch.ones(2, 8, dtype=torch.bool)
    available[1, 2] = False
    class_weight = torch.tensor([1.0, 2.0, 0.5])
    for criterion in (ExpertsNLLLoss(class_weight), ProductOfExpertsNLLLoss(class_weight)):
        full = criterion(logits, y, available, sample_weight=weight)
        kept = criterion(logits[:, seen], y[seen], available[:, seen], sample_weight=weight[seen])
        torch.testing.assert_close(full, kept)
    # Per-expert validation sums (early stopping) are weighted sums.
    total, count = ExpertsNLLLoss().per_expert_sums(logits, y, available, sample_weight=weight)
    losses = ExpertsNLLLoss().expert_losses(logits, y)
    torch.testing.assert_close(total, (losses * weight * available).sum(1))
    torch.testing.assert_close(count, (weight * available).sum(1))
    # Integer weights count like repeated rows.
    repeated = torch.repeat_interleave(torch.arange(8), weight.round().long())
    torch.testing.assert_close(
        ProductOfExpertsNLLLoss()(logits, y, sample_weight=weight.round()),
        ProductOfExpertsNLLLoss()(logits[:, repeated], y[repeated]),
    )
    summed = logits.sum(0)
    assert fit_temperature(summed, y, sample_weight=weight) == pytest.approx(
        fit_temperature(summed[seen], y[seen], sample_weight=weight[seen]), rel=1e-6
    )


@pytest.mark.parametrize(
    "weight, message",
    [
        (np.r_[-1.0, np.ones(79)], "Negative"),
        (np.ones(79), r"expected \(80,\)"),
        (np.r_[np.nan, np.ones(79)], "NaN"),
        (np.r_[np.inf, np.ones(79)], "infinity"),
        (np.zeros(80), "non-zero"),
        (np.array(["a"] * 80), "could not convert"),
    ],
)
def test_bad_sample_weight_is_refused_before_training(fitted_targets_model, weight, message):
    clf, X, y = fitted_targets_model
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match="sample_weight must hold") as info:
        clf.fit(X, y, sample_weight=weight)
    assert info.match(message)
    assert_array_equal(clf.predict_proba(X), before)


@pytest.fixture(scope="module")
def fitted_targets_model():
    X, y = _data()
    return I2M2Classifier(**FAST).fit(X, y), X, y


def test_sample_weight_is_routed_through_permodality_pipeline_and_search():
    X, y = _data(60)
    X = ModalityDict(X)
    weight = np.random.RandomState(2).rand(60) + 0.5

    def pipe():
        prep = PerModality(
            {
                "a": StandardScaler().set_fit_request(sample_weight=True),
                "b": StandardScaler().set_fit_request(sample_weight=False),
            }
        )
        clf = I2M2Classifier(early_stopping=False, **FAST)
        clf.set_fit_request(sample_weight=True).set_score_request(sample_weight=True)
        return Pipeline([("prep", prep), ("clf", clf)])

    with sklearn.config_context(enable_metadata_routing=True):
        fitted = pipe().fit(X, y, sample_weight=weight)
        search = GridSearchCV(pipe(), {"clf__lr": [1e-3]}, cv=2).fit(X, y, sample_weight=weight)
    scalers = fitted.named_steps["prep"].transformers_
    # Only the transformer that requests the weights gets them.
    assert_allclose(scalers["a"].mean_, np.average(X["a"], axis=0, weights=weight))
    assert_allclose(scalers["b"].mean_, X["b"].mean(axis=0))
    direct = I2M2Classifier(early_stopping=False, **FAST).fit(
        fitted.named_steps["prep"].transform(X), y, sample_weight=weight
    )
    proba = fitted.predict_proba(X)
    assert_array_equal(proba, direct.predict_proba(fitted.named_steps["prep"].transform(X)))
    # The refit of the search is the same weighted fit.
    assert_array_equal(search.best_estimator_.predict_proba(X), proba)
    assert np.isfinite(search.best_score_)
