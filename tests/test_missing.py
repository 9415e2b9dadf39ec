"""Missing modalities: at prediction time, at fit time, and their exact semantics."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FAST, make_independent, make_xor, requires_cuda
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_i2m2 import I2M2Classifier, ModalityDict, PerModality
from sk_i2m2.nn.losses import ExpertsNLLLoss
from sk_i2m2.datasets import load_mfeat


def _accuracy(proba, y):
    return float((proba.argmax(1) == y).mean())


def _stage1_accuracy(clf, X, y):
    """Test accuracy of each expert as trained alone in stage 1 (= a unimodal model)."""
    proba = clf.expert_proba(X, stage="pretrain")
    return {name: _accuracy(p, y) for name, p in proba.items()}


def _hide_rows(X, rows, modality):
    X = {k: np.array(v, dtype=np.float32) for k, v in X.items()}
    X[modality][rows] = np.nan
    return X


@pytest.fixture(scope="module")
def mfeat_split():
    X, y = load_mfeat(["fou", "zer", "mor"])
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0)
    return X_train, X_test, y_train, y_test


@pytest.fixture(scope="module")
def mfeat_dropout_model(mfeat_split):
    X_train, _, y_train, _ = mfeat_split
    return I2M2Classifier(modality_dropout=0.3, **FAST).fit(X_train, y_train)


@pytest.mark.parametrize("removed", ["fou", "zer", "mor"])
def test_removing_a_view_keeps_accuracy_of_best_remaining_expert(
        mfeat_dropout_model, mfeat_split, removed):
    clf = mfeat_dropout_model
    _, X_test, _, y_test = mfeat_split
    X_without = {k: v for k, v in X_test.items() if k != removed}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the null embeddings were trained: no warning
        accuracy = clf.score(X_without, y_test)
    singles = _stage1_accuracy(clf, X_test, y_test)
    best_remaining = max(acc for name, acc in singles.items() if name not in (removed, "inter"))
    assert accuracy >= best_remaining - 0.02, (accuracy, singles)
    assert accuracy > 0.6  # chance is 0.1


def test_thirty_percent_missing_rows_still_beat_every_single_expert(mfeat_split):
    X_train, X_test, y_train, y_test = mfeat_split
    rng = np.random.RandomState(0)
    X_train = {k: np.array(v, dtype=np.float32) for k, v in X_train.items()}
    hidden = rng.rand(len(y_train)) < 0.3
    which = rng.randint(3, size=len(y_train))
    for k, name in enumerate(X_train):
        X_train[name][hidden & (which == k)] = np.nan
    clf = I2M2Classifier(**FAST).fit(X_train, y_train)
    assert clf.missing_rate_ == pytest.approx(
        {name: float(np.mean(hidden & (which == k))) for k, name in enumerate(X_train)})
    accuracy = clf.score(X_test, y_test)
    singles = _stage1_accuracy(clf, X_test, y_test)
    for name in X_train:
        assert accuracy > singles[name], (accuracy, singles)


def test_missing_intra_expert_leaves_exactly_the_product_of_the_others():
    X, y = make_independent(300, n_modalities=3)
    clf = I2M2Classifier(dependencies="intra", **FAST).fit(X, y)
    full = clf.expert_proba(X)
    X_without = {k: v for k, v in X.items() if k != "m2"}
    expected = np.log(full["m0"]) + np.log(full["m1"])
    expected = np.exp(expected - np.logaddexp.reduce(expected, axis=1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(X_without), expected, rtol=1e-4, atol=1e-6)
    # A left-out modality and a modality of all-NaN rows are the same thing.
    X_nan = dict(X, m2=np.full_like(X["m2"], np.nan))
    np.testing.assert_array_equal(clf.predict_proba(X_nan), clf.predict_proba(X_without))
    experts = clf.expert_proba(X_without)
    assert np.isnan(experts["m2"]).all()
    np.testing.assert_allclose(experts["m0"], full["m0"], rtol=1e-5)


def test_per_sample_missingness_only_touches_those_samples():
    X, y = make_independent(200, n_modalities=3)
    clf = I2M2Classifier(modality_dropout=0.2, **FAST).fit(X, y)
    rows = np.array([3, 10, 11])
    X_partial = _hide_rows(X, rows, "m1")
    proba, reference = clf.predict_proba(X_partial), clf.predict_proba(X)
    others = np.setdiff1d(np.arange(len(y)), rows)
    np.testing.assert_allclose(proba[others], reference[others], rtol=1e-5, atol=1e-6)
    assert not np.allclose(proba[rows], reference[rows])
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    experts = clf.expert_proba(X_partial)
    assert np.isnan(experts["m1"][rows]).all() and np.isfinite(experts["m1"][others]).all()
    assert np.isfinite(experts["inter"]).all()  # the null embedding stands in


def test_inter_missing_drop_leaves_the_inter_expert_out():
    X, y = make_independent(200, n_modalities=2)
    clf = I2M2Classifier(inter_missing="drop", **FAST).fit(X, y)
    assert clf.module_.experts["inter"].null is None
    X_partial = _hide_rows(X, [0, 1], "m0")
    experts = clf.expert_proba(X_partial)
    assert np.isnan(experts["inter"][[0, 1]]).all() and np.isfinite(experts["inter"][2:]).all()
    # Only m1's expert sees samples 0 and 1: the product is that expert.
    np.testing.assert_allclose(clf.predict_proba(X_partial)[[0, 1]], experts["m1"][[0, 1]],
                               rtol=1e-5)
    inter_only = I2M2Classifier(dependencies="inter", inter_missing="drop", **FAST).fit(X, y)
    message = (r"2 sample\(s\) miss a modality \(first sample 0, missing modality 'm0'\), "
               "but with dependencies='inter' and inter_missing='drop' no expert can see them")
    with pytest.raises(ValueError, match=message):
        inter_only.predict(X_partial)
    with pytest.raises(ValueError, match=message):
        I2M2Classifier(dependencies="inter", inter_missing="drop", **FAST).fit(X_partial, y)


def test_complete_data_without_dropout_never_uses_the_null_embeddings():
    X, y = make_xor(300)
    clf = I2M2Classifier(**FAST).fit(X, y)
    for null in clf.module_.experts["inter"].null:
        assert torch.count_nonzero(null) == 0
    assert clf.missing_rate_ == {"a": 0.0, "b": 0.0}
    dropped = I2M2Classifier(inter_missing="drop", **FAST).fit(X, y)
    # The null embeddings are extra parameters that take no part: same model.
    np.testing.assert_array_equal(clf.predict_proba(X), dropped.predict_proba(X))
    with pytest.warns(UserWarning, match="inter expert never learned a null embedding for "
                                         "it: no training sample missed it"):
        clf.predict({"a": X["a"]})


def test_modality_dropout_trains_the_null_embeddings():
    X, y = make_xor(300)
    clf = I2M2Classifier(modality_dropout=0.3, **FAST).fit(X, y)
    for null in clf.module_.experts["inter"].null:
        assert torch.count_nonzero(null) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict({"a": X["a"]})
    # Dropout acts in training only: prediction is deterministic.
    np.testing.assert_array_equal(clf.predict_proba(X), clf.predict_proba(X))


def test_samples_missing_a_modality_in_fit_train_the_null_embedding_without_warning():
    X, y = make_independent(300, n_modalities=2)
    X_partial = _hide_rows(X, np.arange(0, 300, 4), "m1")
    clf = I2M2Classifier(**FAST).fit(X_partial, y)
    assert clf.missing_rate_ == {"m0": 0.0, "m1": 0.25}
    assert torch.count_nonzero(clf.module_.experts["inter"].null[1]) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.predict({"m0": X["m0"]})
    assert clf.score(X, y) > 0.6


def test_experts_loss_averages_over_the_samples_each_expert_sees():
    logits = torch.randn(2, 6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    available = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 0, 1]], dtype=torch.bool)
    loss = ExpertsNLLLoss()
    per_expert = loss.per_expert(logits, y, available)
    seen = available[1]
    expected = torch.nn.functional.cross_entropy(logits[1][seen], y[seen])
    torch.testing.assert_close(per_expert[1], expected)
    torch.testing.assert_close(per_expert[0], torch.nn.functional.cross_entropy(logits[0], y))
    weighted = ExpertsNLLLoss(weight=torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(
        weighted.per_expert(logits, y, available)[1],
        torch.nn.functional.cross_entropy(logits[1][seen], y[seen],
                                          weight=torch.tensor([1.0, 2.0, 3.0])))


def test_modality_contributions_decompose_the_prediction():
    X, y = make_independent(200, n_modalities=3)
    clf = I2M2Classifier(modality_dropout=0.2, **FAST).fit(X, y)
    X_partial = _hide_rows(X, [5], "m0")
    contributions = clf.modality_contributions(X_partial)
    assert isinstance(contributions, pd.DataFrame)
    assert list(contributions.columns) == ["m0", "m1", "m2", "inter"]
    assert contributions.shape == (200, 4)
    log_proba = clf.predict_log_proba(X_partial)
    predicted = log_proba.argmax(1)
    np.testing.assert_array_equal(contributions.attrs["predicted"], clf.classes_[predicted])
    centred = log_proba - log_proba.mean(1, keepdims=True)
    np.testing.assert_allclose(contributions.sum(axis=1), centred[np.arange(200), predicted],
                               rtol=1e-4, atol=1e-5)
    assert contributions.loc[5, "m0"] == 0.0  # abstains
    assert (contributions.drop(index=5) != 0).all().all()


def test_pipeline_with_per_modality_scaling_handles_missing_modalities():
    X, y = make_independent(200, n_modalities=2)
    pipe = make_pipeline(
        PerModality({"m0": StandardScaler(), "m1": StandardScaler()}),
        I2M2Classifier(modality_dropout=0.3, **FAST),
    )
    X_partial = ModalityDict(_hide_rows(X, np.arange(0, 200, 5), "m0"))
    pipe.fit(X_partial, y)  # StandardScaler ignores and keeps the NaN rows
    assert pipe[-1].missing_rate_["m0"] == pytest.approx(0.2)
    assert pipe.predict_proba({"m1": X["m1"]}).shape == (200, 2)


def test_saved_model_keeps_null_embeddings_and_missing_rates(tmp_path):
    X, y = make_independent(200, n_modalities=2)
    clf = I2M2Classifier(modality_dropout=0.3, **FAST).fit(X, y)
    clf.save(tmp_path)
    loaded = I2M2Classifier.load(tmp_path)
    assert loaded.missing_rate_ == clf.missing_rate_
    X_partial = _hide_rows(X, np.arange(10), "m1")
    np.testing.assert_allclose(loaded.predict_proba(X_partial), clf.predict_proba(X_partial),
                               rtol=1e-6)


@requires_cuda
def test_missing_modalities_on_cuda():
    X, y = make_independent(300, n_modalities=2)
    X_partial = _hide_rows(X, np.arange(0, 300, 3), "m1")
    clf = I2M2Classifier(device="cuda", modality_dropout=0.3, **FAST).fit(X_partial, y)
    cpu = I2M2Classifier(device="cpu", modality_dropout=0.3, **FAST).fit(X_partial, y)
    assert clf.score(X, y) > 0.6 and cpu.score(X, y) > 0.6
    proba = clf.predict_proba({"m0": X["m0"]})
    assert proba.shape == (300, 2) and np.isfinite(proba).all()
    assert np.isnan(clf.expert_proba(X_partial)["m1"][::3]).all()
