"""Missing modalities: at prediction time, at fit time, and their exact semantics."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import torch
from conftest import FAST, make_independent, make_xor, requires_cuda
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from sk_i2m2 import I2M2Classifier, ModalityDict, PerModality
from sk_i2m2.datasets import load_mfeat
from sk_i2m2.encoders import Conv2dEncoder, MLPEncoder
from sk_i2m2.nn.losses import ExpertsNLLLoss


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
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    return X_train, X_test, y_train, y_test


@pytest.fixture(scope="module")
def mfeat_dropout_model(mfeat_split):
    X_train, _, y_train, _ = mfeat_split
    return I2M2Classifier(modality_dropout=0.3, **FAST).fit(X_train, y_train)


@pytest.mark.parametrize("removed", ["fou", "zer", "mor"])
def test_removing_a_view_keeps_accuracy_of_best_remaining_expert(
    mfeat_dropout_model, mfeat_split, removed
):
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
        {name: float(np.mean(hidden & (which == k))) for k, name in enumerate(X_train)}
    )
    accuracy = clf.score(X_test, y_test)
    singles = _stage1_accuracy(clf, X_test, y_test)
    for name in X_train:
        assert accuracy > singles[name], (accuracy, singles)


def test_missing_intra_expert_leaves_exactly_the_product_of_the_others():
    X, y = make_independent(300, n_modalities=3)
    clf = I2M2Classifier(dependencies="intra", calibration=None, **FAST).fit(X, y)
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


@pytest.fixture(scope="module")
def dropout_model():
    """Three modalities, trained with modality dropout; the tests only read it.

    One temperature: expert weights could shrink a redundant expert's
    contributions to ~0, and the contribution test tells abstention (0) apart.
    """
    X, y = make_independent(200, n_modalities=3)
    clf = I2M2Classifier(modality_dropout=0.2, calibration="temperature", **FAST)
    return clf.fit(X, y), X, y


def test_per_sample_missingness_only_touches_those_samples(dropout_model):
    clf, X, y = dropout_model
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
    clf = I2M2Classifier(cv=None, inter_missing="drop", calibration=None, **FAST).fit(X, y)
    assert clf.module_.experts["inter"].null is None
    X_partial = _hide_rows(X, [0, 1], "m0")
    experts = clf.expert_proba(X_partial)
    assert np.isnan(experts["inter"][[0, 1]]).all() and np.isfinite(experts["inter"][2:]).all()
    # Only m1's expert sees samples 0 and 1: the product is that expert.
    np.testing.assert_allclose(
        clf.predict_proba(X_partial)[[0, 1]], experts["m1"][[0, 1]], rtol=1e-5
    )
    inter_only = I2M2Classifier(cv=None, dependencies="inter", inter_missing="drop", **FAST).fit(
        X, y
    )
    message = (
        r"2 sample\(s\) miss a modality \(first sample 0, missing modality 'm0'\), "
        "but with dependencies='inter' and inter_missing='drop' no expert can see them"
    )
    with pytest.raises(ValueError, match=message):
        inter_only.predict(X_partial)
    with pytest.raises(ValueError, match=message):
        I2M2Classifier(cv=None, dependencies="inter", inter_missing="drop", **FAST).fit(
            X_partial, y
        )


def test_complete_data_without_dropout_never_uses_the_null_embeddings():
    X, y = make_xor(300)
    clf = I2M2Classifier(cv=None, **FAST).fit(X, y)
    for null in clf.module_.experts["inter"].null:
        assert torch.count_nonzero(null) == 0
    assert clf.missing_rate_ == {"a": 0.0, "b": 0.0}
    # The null embeddings are extra parameters that take no part: same model,
    # bit for bit with AdamW's per-parameter steps (L-BFGS's dot products run
    # over their zero gradients too, which changes the rounding).
    adamw = dict(cv=None, optimizer=torch.optim.AdamW, **FAST)
    kept = I2M2Classifier(**adamw).fit(X, y)
    dropped = I2M2Classifier(inter_missing="drop", **adamw).fit(X, y)
    np.testing.assert_array_equal(kept.predict_proba(X), dropped.predict_proba(X))
    with pytest.warns(
        UserWarning,
        match="inter expert never learned a null embedding for it: no training sample missed it",
    ):
        clf.predict({"a": X["a"]})


def test_modality_dropout_trains_the_null_embeddings():
    X, y = make_xor(300)
    clf = I2M2Classifier(cv=None, modality_dropout=0.3, **FAST).fit(X, y)
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
    clf = I2M2Classifier(cv=None, **FAST).fit(X_partial, y)
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
        torch.nn.functional.cross_entropy(
            logits[1][seen], y[seen], weight=torch.tensor([1.0, 2.0, 3.0])
        ),
    )


def test_modality_contributions_decompose_the_prediction(dropout_model):
    clf, X, _ = dropout_model
    X_partial = _hide_rows(X, [5], "m0")
    contributions = clf.modality_contributions(X_partial)
    assert isinstance(contributions, pd.DataFrame)
    assert list(contributions.columns) == ["m0", "m1", "m2", "inter"]
    assert contributions.shape == (200, 4)
    log_proba = clf.predict_log_proba(X_partial)
    predicted = log_proba.argmax(1)
    np.testing.assert_array_equal(contributions.attrs["predicted"], clf.classes_[predicted])
    centred = log_proba - log_proba.mean(1, keepdims=True)
    np.testing.assert_allclose(
        contributions.sum(axis=1), centred[np.arange(200), predicted], rtol=1e-4, atol=1e-5
    )
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


# ----------------------------------------------------------------------
# Patients without a whole table, through PerModality


def _clinical_with_absent_patients(n=60, seed=0):
    """A mixed table (numbers and a str category) where every 6th patient has no row."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    clinical = pd.DataFrame(
        {
            "age": 60 + 10 * rng.randn(n) + 8 * y,
            "volume": 3000 + 400 * rng.randn(n) - 300 * y,
            "site": np.where(y == 1, "A", rng.choice(["A", "B", "C"], n)).astype(object),
        }
    )
    absent = np.arange(0, n, 6)
    clinical.loc[absent, ["age", "volume"]] = np.nan
    clinical.loc[absent, "site"] = [None, np.nan] * (len(absent) // 2)
    clinical.loc[1, "age"] = np.nan  # a gap in an observed row: the imputer's job
    image = (rng.randn(n, 1, 8, 8) + 0.5 * y[:, None, None, None]).astype(np.float32)
    return ModalityDict(clinical=clinical, image=image), y, absent


def _encode_clinical():
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["age", "volume"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["site"]),  # sparse output
        ]
    )


def test_column_transformer_pipeline_with_patients_without_the_table():
    X, y, absent = _clinical_with_absent_patients()
    pipe = Pipeline(
        [
            ("pre", PerModality({"clinical": _encode_clinical()})),
            (
                "clf",
                I2M2Classifier(
                    max_epochs=3,
                    random_state=0,
                    encoders={
                        "clinical": MLPEncoder(hidden_sizes=(8,)),
                        "image": Conv2dEncoder(channels=(4,)),
                    },
                ),
            ),
        ]
    )
    pipe.fit(X, y)
    clf = pipe.named_steps["clf"]
    assert clf.missing_rate_["clinical"] == pytest.approx(len(absent) / len(y))
    assert clf.missing_rate_["image"] == 0.0
    assert clf.input_shapes_["clinical"] == (5,)  # 2 numbers + 3 sites
    proba = pipe.predict_proba(X)
    assert proba.shape == (len(y), 2) and np.isfinite(proba).all()
    experts = clf.expert_proba(pipe[:-1].transform(X))
    assert np.isnan(experts["clinical"][absent]).all()
    assert np.isfinite(np.delete(experts["clinical"], absent, axis=0)).all()
    # Prediction for patients with and without the table, and with no table at all.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the null embedding was trained on the absent rows
        without = pipe.predict_proba({"image": X["image"]})
        some = pipe.predict_proba(X[absent[:3]])
    np.testing.assert_allclose(some, proba[absent[:3]], rtol=1e-5)
    np.testing.assert_allclose(without[absent], proba[absent], rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.delete(without, absent, axis=0), np.delete(proba, absent, axis=0))


def test_per_modality_fits_on_and_transforms_only_the_observed_rows():
    X, y, absent = _clinical_with_absent_patients()
    observed = np.setdiff1d(np.arange(len(y)), absent)
    pm = PerModality({"clinical": _encode_clinical()})
    Xt = pm.fit_transform(X, y)
    clinical = Xt["clinical"]
    assert isinstance(clinical, np.ndarray) and clinical.dtype == np.float64
    assert clinical.shape == (len(y), 5)
    # The imputer fills the gap of patient 1 but never invents a table for
    # the patients who have none; it learnt its means from the observed rows.
    assert np.isnan(clinical[absent]).all() and np.isfinite(clinical[observed]).all()
    imputer = pm.transformers_["clinical"].named_transformers_["num"][0]
    np.testing.assert_allclose(
        imputer.statistics_, X["clinical"].loc[observed, ["age", "volume"]].mean()
    )
    np.testing.assert_allclose(clinical[observed, :2].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(pm.transform(X)["clinical"], clinical)
    # A plain SimpleImputer alone keeps all-NaN rows missing as well.
    table = X["clinical"][["age", "volume"]]
    imputed = PerModality({"t": SimpleImputer()}).fit_transform({"t": table})["t"]
    assert np.isnan(imputed[absent]).all() and np.isfinite(imputed[observed]).all()
    # A sparse output stays sparse, its missing rows stored NaN.
    sites = {"site": X["clinical"][["site"]]}
    onehot = PerModality({"site": OneHotEncoder()}).fit(sites)
    encoded = onehot.transform(sites)["site"]
    assert scipy.sparse.issparse(encoded) and encoded.shape == (len(y), 3)
    dense = encoded.toarray()
    assert np.isnan(dense[absent]).all() and (dense[observed].sum(1) == 1).all()
    assert scipy.sparse.issparse(onehot.transform(ModalityDict(sites)[observed])["site"])
    # A modality missing in every sample is left out, as if left out of X.
    assert list(pm.transform(X[absent])) == ["image"]
    with pytest.raises(ValueError, match="Modality 'clinical' is missing .* every sample"):
        PerModality({"clinical": _encode_clinical()}).fit(X[absent])


def test_per_modality_pandas_output_keeps_the_index_and_nan_rows():
    X, y, absent = _clinical_with_absent_patients()
    X["clinical"].index = np.arange(100, 100 + len(y))
    encode = _encode_clinical().set_params(cat__sparse_output=False)
    pm = PerModality({"clinical": encode}).set_output(transform="pandas")
    clinical = pm.fit_transform(X)["clinical"]
    assert isinstance(clinical, pd.DataFrame)
    assert list(clinical.index) == list(X["clinical"].index)
    assert list(clinical.columns) == list(pm.get_feature_names_out()["clinical"])
    assert clinical.iloc[absent].isna().all().all()
    assert clinical.drop(index=clinical.index[absent]).notna().all().all()


def test_per_modality_routes_per_sample_metadata_to_the_observed_rows():
    from sklearn import config_context

    X, y, absent = _clinical_with_absent_patients()
    observed = np.setdiff1d(np.arange(len(y)), absent)
    weight = np.arange(len(y), dtype=float)
    table = X["clinical"][["volume"]]
    with config_context(enable_metadata_routing=True):
        scaler = StandardScaler().set_fit_request(sample_weight=True)
        pm = PerModality({"t": scaler}).fit({"t": table}, sample_weight=weight)
    np.testing.assert_allclose(
        pm.transformers_["t"].mean_,
        np.average(table.iloc[observed], axis=0, weights=weight[observed]),
    )


def test_text_modality_with_absent_notes():
    from sklearn.feature_extraction.text import CountVectorizer

    notes = ["chest pain", None, "no pain", np.nan, "chest"] * 4
    Xt = PerModality({"notes": CountVectorizer()}).fit_transform({"notes": notes})
    # The vectoriser's sparse output stays sparse; absent notes are rows of stored NaN.
    assert Xt["notes"].shape == (20, 3) and scipy.sparse.issparse(Xt["notes"])
    counts = Xt["notes"].toarray()
    assert np.isnan(counts[1::5]).all() and np.isnan(counts[3::5]).all()
    assert np.isfinite(counts[0::5]).all()


@pytest.mark.parametrize("dtype", ["Float64", "Int64", "boolean"])
def test_pandas_nullable_dtypes_are_read_with_na_as_nan(dtype):
    rng = np.random.RandomState(0)
    n = 40
    y = np.arange(n) % 2
    values = rng.randint(0, 2, (n, 3)) if dtype == "boolean" else rng.randint(0, 9, (n, 3))
    values = values + (y[:, None] if dtype != "boolean" else 0)
    plain = pd.DataFrame(values.astype(np.float64), columns=["a", "b", "c"])
    plain.iloc[[2, 9, 20]] = np.nan  # patients without the table
    nullable = plain.astype(dtype)
    assert nullable.iloc[2].isna().all() and nullable["a"].dtype == dtype
    image = (rng.randn(n, 1, 8, 8) + y[:, None, None, None]).astype(np.float32)
    fits = [
        I2M2Classifier(max_epochs=3, random_state=0).fit({"tab": tab, "img": image}, y)
        for tab in (plain, nullable)
    ]
    assert fits[1].missing_rate_["tab"] == pytest.approx(3 / n)
    np.testing.assert_allclose(
        fits[1].predict_proba({"tab": nullable, "img": image}),
        fits[0].predict_proba({"tab": plain, "img": image}),
    )
    # pd.NA inside an observed row is a gap to impute, as NaN is.
    gap = nullable.copy()
    gap.iloc[0, 1] = pd.NA
    with pytest.raises(ValueError, match="Modality 'tab' contains 1 NaN value.*sample 0"):
        fits[1].predict({"tab": gap, "img": image})


def test_saved_model_keeps_null_embeddings_and_missing_rates(tmp_path):
    X, y = make_independent(200, n_modalities=2)
    clf = I2M2Classifier(modality_dropout=0.3, **FAST).fit(X, y)
    clf.save(tmp_path)
    loaded = I2M2Classifier.load(tmp_path)
    assert loaded.missing_rate_ == clf.missing_rate_
    X_partial = _hide_rows(X, np.arange(10), "m1")
    np.testing.assert_allclose(
        loaded.predict_proba(X_partial), clf.predict_proba(X_partial), rtol=1e-6
    )


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
