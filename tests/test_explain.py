import sys

import matplotlib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from joblib import parallel_backend
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.inspection import permutation_importance as sklearn_permutation_importance
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from sk_i2m2 import I2M2Classifier, ModalityDict, PerModality
from sk_i2m2.inspection import (
    integrated_gradients,
    permutation_importance,
    plot_permutation_importance,
)

matplotlib.use("Agg")

INFORMATIVE = 2  # the one column of modality "a" that carries the label


def _data(n=400, seed=0):
    """Label = sign of a[:, 2]; "b" and "img" are noise; "b" misses in 1 sample of 10."""
    rng = np.random.RandomState(seed)
    X = ModalityDict(
        a=rng.randn(n, 4).astype(np.float32),
        b=rng.randn(n, 3).astype(np.float32),
        img=rng.randn(n, 1, 6, 6).astype(np.float32),
    )
    X["b"][::10] = np.nan
    y = (X["a"][:, INFORMATIVE] > 0).astype(int)
    return X, y


TRAIN, TEST = slice(0, 250), slice(250, None)


@pytest.fixture(scope="module")
def fitted():
    X, y = _data()
    clf = I2M2Classifier(max_epochs=10, lr=1e-2, early_stopping=False, random_state=0)
    return clf.fit(X[TRAIN], y[TRAIN]), X[TEST], y[TEST]


class _Stacked(BaseEstimator):
    """A scikit-learn model on the modalities side by side: a duck-typed dict estimator."""

    def __init__(self, model):
        self.model = model

    @staticmethod
    def _stack(X):
        arrays = [X[m].toarray() if sp.issparse(X[m]) else np.asarray(X[m]) for m in sorted(X)]
        return np.nan_to_num(np.hstack([a.reshape(len(a), -1) for a in arrays]))

    def fit(self, X, y):
        self.model_ = self.model.fit(self._stack(X), y)
        return self

    def predict(self, X):
        return self.model_.predict(self._stack(X))


class StackedClassifier(ClassifierMixin, _Stacked):
    def predict_proba(self, X):
        return self.model_.predict_proba(self._stack(X))

    @property
    def classes_(self):
        return self.model_.classes_


class StackedRegressor(RegressorMixin, _Stacked):
    pass


# ----------------------------------------------------------------------
# Permutation importance


def test_finds_informative_modality_and_feature(fitted):
    clf, X, y = fitted
    result = permutation_importance(clf, X, y, n_repeats=3, random_state=0)
    assert list(result.feature_names) == ["a", "b", "img"]
    assert list(result.modality) == ["a", "b", "img"]
    assert result.importances_mean[0] > 0.3
    assert np.all(np.abs(result.importances_mean[1:]) < 0.05)

    result = permutation_importance(
        clf, X, y, by="feature", modalities=["a", "b"], n_repeats=3, random_state=0
    )
    names = ["a[0]", "a[1]", "a[2]", "a[3]", "b[0]", "b[1]", "b[2]"]
    assert list(result.feature_names) == names
    assert list(result.modality) == ["a"] * 4 + ["b"] * 3
    assert result.importances.shape == (7, 3)
    assert result.importances_mean.shape == result.importances_std.shape == (7,)
    assert np.argmax(result.importances_mean) == INFORMATIVE
    assert result.importances_mean[INFORMATIVE] > 0.3
    others = np.delete(result.importances_mean, INFORMATIVE)
    assert np.all(np.abs(others) < 0.05)


def test_same_numbers_as_scikit_learn_on_one_vector_modality():
    rng = np.random.RandomState(0)
    a = rng.randn(150, 4)
    y = (a[:, 1] + 0.5 * a[:, 3] > 0).astype(int)
    model = StackedClassifier(LogisticRegression()).fit({"a": a}, y)
    kwargs = dict(n_repeats=4, random_state=3, max_samples=0.8, scoring="neg_log_loss")
    expected = sklearn_permutation_importance(model.model_, a, y, **kwargs)
    frame = pd.DataFrame(a, columns=["w", "x", "y", "z"])
    for value in (a, torch.from_numpy(a), sp.csr_matrix(a), frame):
        result = permutation_importance(model, {"a": value}, y, by="feature", **kwargs)
        np.testing.assert_allclose(result.importances, expected.importances)
        np.testing.assert_allclose(result.importances_mean, expected.importances_mean)
        np.testing.assert_allclose(result.importances_std, expected.importances_std)
    # DataFrame columns name the features.
    assert list(result.feature_names) == ["w", "x", "y", "z"]


def test_deterministic_and_independent_of_n_jobs(fitted):
    clf, X, y = fitted
    kwargs = dict(by="feature", modalities=["a"], n_repeats=2, random_state=0)
    first = permutation_importance(clf, X, y, **kwargs)
    again = permutation_importance(clf, X, y, **kwargs)
    np.testing.assert_array_equal(first.importances, again.importances)
    with parallel_backend("threading"):
        parallel = permutation_importance(clf, X, y, n_jobs=2, **kwargs)
    np.testing.assert_array_equal(first.importances, parallel.importances)
    other = permutation_importance(clf, X, y, **{**kwargs, "random_state": 1})
    assert not np.array_equal(first.importances, other.importances)


def test_several_scorers_and_sample_weight(fitted):
    clf, X, y = fitted
    weights = np.linspace(0.5, 1.5, len(y))
    results = permutation_importance(
        clf,
        X,
        y,
        scoring=["accuracy", "neg_log_loss"],
        n_repeats=2,
        random_state=0,
        sample_weight=weights,
    )
    assert set(results) == {"accuracy", "neg_log_loss"}
    single = permutation_importance(
        clf, X, y, scoring="neg_log_loss", n_repeats=2, random_state=0, sample_weight=weights
    )
    np.testing.assert_allclose(results["neg_log_loss"].importances, single.importances)
    assert list(results["accuracy"].feature_names) == ["a", "b", "img"]
    assert results["neg_log_loss"].importances_mean[0] > 0.5


def test_pipeline_input_is_permuted():
    X, y = _data(300)
    X = ModalityDict(a=pd.DataFrame(X["a"], columns=["age", "bmi", "crp", "hb"]), b=X["b"])
    pipe = make_pipeline(
        PerModality({"a": StandardScaler()}),
        I2M2Classifier(max_epochs=10, lr=1e-2, early_stopping=False, random_state=0),
    ).fit(X[:200], y[:200])
    result = permutation_importance(
        pipe, X[200:], y[200:], by="feature", modalities=["a"], n_repeats=2, random_state=0
    )
    assert list(result.feature_names) == ["age", "bmi", "crp", "hb"]
    assert result.feature_names[np.argmax(result.importances_mean)] == "crp"


def test_missing_rows_stay_missing(fitted):
    clf, X, y = fitted
    missing = np.isnan(X["b"]).all(axis=1)
    assert missing.any()
    seen = []

    class Recorder(StackedClassifier):
        def predict_proba(self, X):
            seen.append(np.isnan(np.asarray(X["b"])))
            return super().predict_proba(X)

    model = Recorder(LogisticRegression()).fit({"a": X["a"], "b": X["b"]}, y)
    for by in ("modality", "feature"):
        permutation_importance(
            model, {"a": X["a"], "b": X["b"]}, y, by=by, scoring="neg_log_loss", random_state=0
        )
    assert len(seen) > 10
    for nan in seen:
        # The same samples miss "b", whole; no other value is NaN.
        np.testing.assert_array_equal(nan.all(axis=1), missing)
        np.testing.assert_array_equal(nan.any(axis=1), missing)
    # The I2M2 model scores rows that miss "b" (it was fitted with some).
    result = permutation_importance(clf, X, y, by="feature", modalities=["b"], random_state=0)
    assert np.all(np.abs(result.importances_mean) < 0.05)


def test_regressor_finds_informative_feature():
    rng = np.random.RandomState(0)
    X = {"a": rng.randn(200, 3), "b": rng.randn(200, 2)}
    target = 3 * X["b"][:, 1] + 0.1 * rng.randn(200)
    model = StackedRegressor(Ridge()).fit(X, target)
    result = permutation_importance(model, X, target, by="feature", random_state=0)
    assert list(result.feature_names) == ["a[0]", "a[1]", "a[2]", "b[0]", "b[1]"]
    assert np.argmax(result.importances_mean) == 4
    # The default score of a regressor is R²: shuffling the only signal loses all of it.
    assert result.importances_mean[4] > 1.5


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(modalities=["z"]), ValueError, "Modality 'z' in modalities is not in X"),
        (dict(modalities=["a", "a"]), ValueError, "lists a modality twice"),
        (dict(modalities=[]), ValueError, "modalities is empty"),
        (dict(by="column"), InvalidParameterError, "'by' parameter"),
        (dict(by="feature"), ValueError, "modality 'img' has samples of shape \\(1, 6, 6\\)"),
        (dict(max_samples=1000), ValueError, "max_samples must be <= n_samples"),
        (dict(n_repeats=0), InvalidParameterError, "'n_repeats' parameter"),
    ],
)
def test_errors(fitted, kwargs, error, match):
    clf, X, y = fitted
    with pytest.raises(error, match=match):
        permutation_importance(clf, X, y, **kwargs)


def test_input_errors(fitted):
    clf, X, y = fitted
    with pytest.raises(TypeError, match="X must be a mapping"):
        permutation_importance(clf, X["a"], y)
    with pytest.raises(ValueError, match="X has 150 samples but y has 149"):
        permutation_importance(clf, X, y[1:])
    with pytest.raises(ValueError, match="modality 'texts' has a list"):
        permutation_importance(clf, {"texts": ["x"] * 3}, [0, 1, 0], by="feature")


def test_plot_permutation_importance(fitted):
    clf, X, y = fitted
    result = permutation_importance(clf, X, y, by="feature", modalities=["a", "b"], n_repeats=2)
    ax = plot_permutation_importance(result, top=3)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(labels) == 3 and labels[0] == "a[2]"
    assert len(ax.patches) == 3
    ax = plot_permutation_importance(result)
    assert len(ax.get_yticklabels()) == 7
    with pytest.raises(ValueError, match="top must be a positive int"):
        plot_permutation_importance(result, top=0)


# ----------------------------------------------------------------------
# Integrated gradients


def test_integrated_gradients_finds_informative_feature_and_is_complete(fitted):
    pytest.importorskip("captum")
    clf, X, _ = fitted
    X = X[:60]
    attributions = integrated_gradients(clf, X, n_steps=100)
    assert list(attributions) == ["a", "b", "img"]
    for name in X:
        assert attributions[name].shape == X[name].shape
    per_feature = np.abs(attributions["a"]).mean(axis=0)
    assert np.argmax(per_feature) == INFORMATIVE
    assert per_feature[INFORMATIVE] > 5 * np.delete(per_feature, INFORMATIVE).max()
    assert per_feature[INFORMATIVE] > 5 * np.abs(attributions["b"]).mean(axis=0).max()
    # A sample that misses "b" gets no attribution there.
    missing = np.isnan(X["b"]).all(axis=1)
    assert missing.any() and np.all(attributions["b"][missing] == 0)

    # Completeness: per sample, the attributions add up to the change of the
    # log-probability of the predicted class from the baseline (0) to x.
    rows = np.arange(len(missing))
    target = np.searchsorted(clf.classes_, clf.predict(X))
    baseline = ModalityDict({m: np.where(np.isnan(v), np.nan, 0.0) for m, v in X.items()})
    change = clf.predict_log_proba(X)[rows, target] - clf.predict_log_proba(baseline)[rows, target]
    total = sum(a.reshape(len(a), -1).sum(axis=1) for a in attributions.values())
    assert np.abs(change).mean() > 0.3
    np.testing.assert_allclose(total, change, atol=0.02)


def test_integrated_gradients_options(fitted):
    pytest.importorskip("captum")
    clf, X, y = fitted
    X, y = X[:20], y[:20]
    # Modalities left out of X are missing; only those in X are attributed.
    with pytest.warns(UserWarning, match="never learned a null embedding for it"):
        default = integrated_gradients(clf, {"a": X["a"]}, n_steps=8)
    assert list(default) == ["a"]
    # One label for all samples, or one per sample; batches give the same result.
    one = integrated_gradients(clf, X, target=1, n_steps=8)
    each = integrated_gradients(clf, X, target=np.ones(20, int), n_steps=8, internal_batch_size=50)
    for name in X:
        np.testing.assert_allclose(one[name], each[name], atol=1e-5)
    # The class-0 and class-1 log-probabilities of two classes move in opposite directions.
    zero = integrated_gradients(clf, X, target=0, n_steps=8)
    assert np.sum(one["a"][:, INFORMATIVE] * zero["a"][:, INFORMATIVE] < 0) > 15
    # At a baseline equal to the input there is nothing to attribute.
    same = integrated_gradients(clf, X, baselines={m: X[m] for m in ("a", "img")}, n_steps=8)
    assert np.all(same["a"] == 0) and np.all(same["img"] == 0)
    # A baseline of one sample's shape broadcasts over the samples.
    mean = integrated_gradients(clf, X, baselines={"a": X["a"].mean(axis=0)}, n_steps=8)
    assert not np.allclose(mean["a"], one["a"])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(target="yes"), ValueError, "target 'yes' is not a class of the model"),
        (dict(target=[0, 1]), ValueError, "one class label or one per sample"),
        (dict(baselines={"z": 0}), ValueError, "baselines has modality 'z'"),
        (dict(baselines={"a": np.zeros(3)}), ValueError, "Modality 'a': baseline of shape"),
        (dict(baselines=0.0), TypeError, "baselines must be None or a dict"),
        (dict(n_steps=0), ValueError, "n_steps must be a positive int"),
    ],
)
def test_integrated_gradients_errors(fitted, kwargs, error, match):
    pytest.importorskip("captum")
    clf, X, _ = fitted
    with pytest.raises(error, match=match):
        integrated_gradients(clf, X[:5], **kwargs)


def test_integrated_gradients_needs_a_classifier_and_captum(fitted, monkeypatch):
    clf, X, _ = fitted
    pipe = make_pipeline(StandardScaler(), LogisticRegression())
    with pytest.raises(TypeError, match="needs a fitted I2M2Classifier"):
        integrated_gradients(pipe, X)
    monkeypatch.setitem(sys.modules, "captum", None)
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(ImportError, match=r"pip install 'sk-i2m2\[explain\]'"):
        integrated_gradients(clf, X)


def test_integrated_gradients_of_a_cross_fitted_model():
    pytest.importorskip("captum")
    rng = np.random.RandomState(0)
    X = {"a": rng.randn(100, 3).astype(np.float32), "b": rng.randn(100, 2).astype(np.float32)}
    y = (X["a"][:, 0] > 0).astype(int)
    # A small cohort: 5 fold models, their experts averaged, and a temperature.
    clf = I2M2Classifier(max_epochs=2, random_state=0).fit(X, y)
    assert clf.n_folds_ == 5
    attributions = integrated_gradients(clf, X, target=1, n_steps=128)
    zeros = {m: np.zeros_like(v) for m, v in X.items()}
    change = clf.predict_log_proba(X)[:, 1] - clf.predict_log_proba(zeros)[:, 1]
    total = attributions["a"].sum(axis=1) + attributions["b"].sum(axis=1)
    # The rows are separable, so the log-probabilities reach -30: the path
    # integral's Riemann sum is exact to a relative 1e-3 there.
    np.testing.assert_allclose(total, change, rtol=2e-3, atol=1e-3)
