"""scikit-learn ecosystem: PerModality, Pipeline, search, splits, pandas, estimator contract."""

import inspect
import pickle
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn import config_context
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, OneHotEncoder, StandardScaler
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import check_is_fitted

from sk_i2m2 import I2M2Classifier, ModalityDict, PerModality
from sk_i2m2.encoders import Conv2dEncoder, MLPEncoder
from sk_i2m2.fusion import LowRankTensorFusion


def make_clinical_image(n_patients=40, visits=3, seed=0, categorical=False):
    """A raw clinical table and an 8x8 image per visit; labels are per patient."""
    rng = np.random.RandomState(seed)
    groups = np.repeat(np.arange(n_patients), visits)
    y = rng.randint(0, 2, n_patients)[groups]
    n = len(groups)
    clinical = pd.DataFrame(
        {
            "age": 60 + 10 * rng.randn(n) + 8 * y,
            "volume": 3000 + 400 * rng.randn(n) - 300 * y,
            "flag": rng.randint(0, 2, n),
        }
    )
    if categorical:
        clinical["site"] = np.where(y == 1, "A", rng.choice(["A", "B", "C"], n))
    image = (rng.randn(n, 1, 8, 8) + 0.5 * y[:, None, None, None]).astype(np.float32)
    return ModalityDict(clinical=clinical, image=image), y, groups


def tiny_clf(**params):
    params = {
        "encoders": {
            "clinical": MLPEncoder(hidden_sizes=(8,)),
            "image": Conv2dEncoder(channels=(4,)),
        },
        "max_epochs": 3,
        "early_stopping": False,
        "lr": 3e-3,
        "random_state": 0,
        **params,
    }
    return I2M2Classifier(**params)


def tiny_pipeline(**clf_params):
    return Pipeline(
        [("prep", PerModality({"clinical": StandardScaler()})), ("clf", tiny_clf(**clf_params))]
    )


@pytest.fixture(scope="module")
def data():
    return make_clinical_image()


@pytest.fixture(scope="module")
def fitted_pipeline(data):
    X, y, _ = data
    return tiny_pipeline().fit(X, y)


# ----------------------------------------------------------------------
# PerModality


def test_per_modality_transforms_listed_and_passes_through_the_rest(data):
    X, y, _ = data
    scaler = StandardScaler()
    pm = PerModality({"clinical": scaler})
    Xt = pm.fit_transform(X, y)
    assert isinstance(Xt, ModalityDict) and list(Xt) == ["clinical", "image"]
    np.testing.assert_allclose(Xt["clinical"].mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(Xt["clinical"].std(0), 1, rtol=1e-6)
    assert Xt["image"] is X["image"]  # images are untouched unless given a transformer
    # The given transformer is cloned; the fitted one is in transformers_.
    assert not hasattr(scaler, "mean_")
    assert pm.transformers_["clinical"] is not scaler
    np.testing.assert_allclose(pm.transformers_["clinical"].mean_, X["clinical"].mean())
    assert pm.transformers_["image"] == "passthrough"
    assert pm.modalities_ == ["clinical", "image"]
    assert list(pm.feature_names_in_) == ["clinical"]
    assert list(pm.feature_names_in_["clinical"]) == ["age", "volume", "flag"]
    # fit + transform is fit_transform; a plain dict works as well.
    Xt2 = PerModality({"clinical": StandardScaler()}).fit(dict(X)).transform(dict(X))
    np.testing.assert_allclose(Xt2["clinical"], Xt["clinical"])


def test_per_modality_drop_remainder_and_image_transformer(data):
    X, _, _ = data
    Xt = PerModality({"clinical": "drop"}).fit_transform(X)
    assert list(Xt) == ["image"]
    Xt = PerModality({"clinical": "passthrough"}, remainder="drop").fit_transform(X)
    assert list(Xt) == ["clinical"] and Xt["clinical"] is X["clinical"]
    # An image gets a transformer only when given one, and keeps its shape.
    pm = PerModality({"image": FunctionTransformer(np.abs)})
    Xt = pm.fit_transform(X)
    assert Xt["image"].shape == X["image"].shape and (Xt["image"] >= 0).all()
    # A dropped modality may be left out at transform.
    pm = PerModality({"clinical": "drop"}).fit(X)
    assert list(pm.transform({"image": X["image"][:5]})) == ["image"]


def test_per_modality_feature_names_out(data):
    X, _, _ = data
    X = ModalityDict(X, extra=np.zeros((len(X), 2)))
    pm = PerModality({"clinical": StandardScaler()}).fit(X)
    names = pm.get_feature_names_out()
    assert list(names) == ["clinical", "image", "extra"]
    assert list(names["clinical"]) == ["age", "volume", "flag"]
    assert names["image"] is None
    assert list(names["extra"]) == ["x0", "x1"]
    assert list(pm.get_feature_names_out({"extra": ["a", "b"]})["extra"]) == ["a", "b"]
    assert list(PerModality({}).fit(X).get_feature_names_out()["clinical"]) == [
        "age",
        "volume",
        "flag",
    ]


def test_per_modality_nested_params_and_clone():
    transformers = {"tabular": StandardScaler(), "image": "passthrough"}
    pm = PerModality(transformers)
    params = pm.get_params(deep=True)
    assert params["tabular__with_mean"] is True
    assert params["image"] == "passthrough" and params["remainder"] == "passthrough"
    pm.set_params(tabular__with_mean=False)
    assert pm.transformers["tabular"].with_mean is False
    pm.set_params(tabular=MinMaxScaler(), image="drop")
    assert isinstance(pm.transformers["tabular"], MinMaxScaler)
    assert pm.transformers["image"] == "drop"
    assert isinstance(transformers["tabular"], StandardScaler)  # the user's dict is kept
    # A new ``transformers`` applies before its entries' parameters.
    pm.set_params(transformers={"a": StandardScaler()}, a__with_std=False)
    assert pm.transformers["a"].with_std is False
    copy = clone(pm)
    assert copy.transformers["a"] is not pm.transformers["a"]
    assert copy.transformers["a"].get_params() == pm.transformers["a"].get_params()


def test_per_modality_errors(data):
    X, _, _ = data
    with pytest.raises(TypeError, match="mapping of modality name"):
        PerModality({}).fit(X["image"])
    with pytest.raises(ValueError, match="modality 'notes', which is not in X"):
        PerModality({"notes": StandardScaler()}).fit(X)
    with pytest.raises(ValueError, match="'passthrough' or 'drop'"):
        PerModality({"clinical": "scale"}).fit(X)
    with pytest.raises(TypeError, match="transformer instance"):
        PerModality({"clinical": StandardScaler}).fit(X)
    with pytest.raises(ValueError, match="conflict with constructor arguments"):
        PerModality({"remainder": StandardScaler()}).fit({"remainder": np.zeros((3, 2))})
    with pytest.raises(NotFittedError):
        PerModality({"clinical": StandardScaler()}).transform(X)
    pm = PerModality({"clinical": StandardScaler()}).fit(X)
    # A modality missing at prediction time is left out of the output too.
    assert list(pm.transform({"clinical": X["clinical"]})) == ["clinical"]
    with pytest.raises(ValueError, match="Modality 'other' was not seen in fit"):
        pm.transform(dict(X, other=X["image"]))
    with pytest.raises(ValueError, match="Modality 'image' has 3 samples"):
        pm.transform({"clinical": X["clinical"], "image": X["image"][:3]})


def test_per_modality_routes_metadata(data):
    X, _, _ = data
    weight = np.r_[np.ones(60), np.zeros(len(X) - 60)]
    expected = np.average(X["clinical"], axis=0, weights=weight)
    with pytest.raises(ValueError, match="sample_weight"):
        PerModality({"clinical": StandardScaler()}).fit(X, sample_weight=weight)
    with config_context(enable_metadata_routing=True):
        scaler = StandardScaler().set_fit_request(sample_weight=True)
        pm = PerModality({"clinical": scaler}).fit(X, sample_weight=weight)
        np.testing.assert_allclose(pm.transformers_["clinical"].mean_, expected)
        pm.fit_transform(X, sample_weight=weight)
        np.testing.assert_allclose(pm.transformers_["clinical"].mean_, expected)


def test_per_modality_text_list_modality():
    # A list of strings is a modality too: a text pipeline turns it into features.
    from sklearn.feature_extraction.text import CountVectorizer

    X = {"notes": ["chest pain", "no pain", "chest"] * 4, "tab": np.ones((12, 2))}
    pm = PerModality({"notes": CountVectorizer()})
    Xt = pm.fit_transform(X)
    assert Xt["notes"].shape == (12, 3)
    assert list(pm.get_feature_names_out()["notes"]) == ["chest", "no", "pain"]


# ----------------------------------------------------------------------
# Pipeline, search and splits


def test_pipeline_fit_predict(data, fitted_pipeline):
    X, y, _ = data
    proba = fitted_pipeline.predict_proba(X)
    assert proba.shape == (len(y), 2)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    assert fitted_pipeline.score(X, y) > 0.7  # chance is about 0.5
    clf = fitted_pipeline.named_steps["clf"]
    assert clf.expert_names_ == ["clinical", "image", "inter"]
    # The scaler's own fitted means, not the classifier's, standardised the table.
    np.testing.assert_allclose(
        fitted_pipeline.named_steps["prep"].transformers_["clinical"].mean_, X["clinical"].mean()
    )


def test_grid_search_over_components_in_parallel(data, tmp_path, monkeypatch):
    X, y, groups = data
    monkeypatch.chdir(tmp_path)
    grid = [
        {"clf__dependencies": ["both", "inter"], "clf__fusion": ["concat", "lrtf"]},
        {
            "clf__encoders__clinical__hidden_sizes": [(4,)],
            "clf__lr": [1e-2],
            "clf__max_epochs": [2],
        },
    ]
    scoring = ["roc_auc", "neg_log_loss", "balanced_accuracy"]
    search = GridSearchCV(
        tiny_pipeline(),
        grid,
        cv=GroupKFold(2),
        scoring=scoring,
        refit="neg_log_loss",
        n_jobs=2,
        error_score="raise",
    )
    search.fit(X, y, groups=groups)
    results = search.cv_results_
    assert len(results["params"]) == 5
    for metric in scoring:
        assert np.isfinite(results[f"mean_test_{metric}"]).all()
    assert (results["mean_test_neg_log_loss"] < 0).all()
    assert results["mean_test_roc_auc"].max() > 0.7
    best = search.best_estimator_.named_steps["clf"]
    assert search.best_index_ == np.argmax(results["mean_test_neg_log_loss"])
    for key, value in search.best_params_.items():
        assert search.best_estimator_.get_params()[key] == value
    check_is_fitted(best)
    assert search.predict_proba(X).shape == (len(y), 2)
    # Each candidate is fitted on its own: the parallel scores are those of a
    # sequential run of the same candidate.
    params = results["params"][4]
    sequential = cross_validate(
        tiny_pipeline().set_params(**params),
        X,
        y,
        groups=groups,
        cv=GroupKFold(2),
        scoring="neg_log_loss",
    )
    parallel = [results[f"split{i}_test_neg_log_loss"][4] for i in range(2)]
    np.testing.assert_allclose(sequential["test_score"], parallel, rtol=1e-4)
    assert list(tmp_path.iterdir()) == []  # no checkpoint files


def test_encoder_hyperparameter_reaches_the_fitted_model(data):
    X, y, _ = data
    pipe = tiny_pipeline().set_params(
        clf__encoders__clinical__hidden_sizes=(5, 3), clf__max_epochs=1, clf__finetune_epochs=0
    )
    clf = pipe.fit(X, y).named_steps["clf"]
    widths = [
        m.out_features
        for m in clf.module_.experts["clinical"].encoder.modules()
        if isinstance(m, torch.nn.Linear)
    ]
    assert widths == [5, 3]
    assert len(clf.pretrain_net_.history) == 1


@pytest.mark.parametrize("routing", [False, True])
def test_group_splits_keep_patients_together(data, routing):
    X, y, groups = data
    with config_context(enable_metadata_routing=routing):
        split_args = {"params": {"groups": groups}} if routing else {"groups": groups}
        result = cross_validate(
            tiny_pipeline(max_epochs=2), X, y, cv=GroupKFold(2), return_indices=True, **split_args
        )
        scores = cross_val_score(tiny_pipeline(max_epochs=2), X, y, cv=GroupKFold(2), **split_args)
    np.testing.assert_allclose(scores, result["test_score"])
    for train, test in zip(result["indices"]["train"], result["indices"]["test"]):
        assert not set(groups[train]) & set(groups[test])


def test_grid_search_with_metadata_routing(data):
    X, y, groups = data
    with config_context(enable_metadata_routing=True):
        search = GridSearchCV(
            tiny_pipeline(max_epochs=2),
            {"clf__dependencies": ["intra", "both"]},
            cv=GroupKFold(2),
            scoring="roc_auc",
        )
        search.fit(X, y, groups=groups)
    assert search.best_params_["clf__dependencies"] in ("intra", "both")
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


# ----------------------------------------------------------------------
# pandas


def test_dataframe_feature_names_per_modality(data):
    X, y, _ = data
    pipe = tiny_pipeline(max_epochs=1).set_output(transform="pandas").fit(X, y)
    clf = pipe.named_steps["clf"]
    assert list(clf.feature_names_in_) == ["clinical"]  # the image has no columns
    assert list(clf.feature_names_in_["clinical"]) == ["age", "volume", "flag"]
    assert list(pipe.named_steps["prep"].get_feature_names_out()["clinical"]) == [
        "age",
        "volume",
        "flag",
    ]
    # scikit-learn's global pandas output reaches the modalities, not the container.
    with config_context(transform_output="pandas"):
        Xt = PerModality({"clinical": StandardScaler()}).fit_transform(X)
    assert isinstance(Xt, ModalityDict) and isinstance(Xt["clinical"], pd.DataFrame)
    assert Xt["image"] is X["image"]


@pytest.mark.parametrize("prep", [{"clinical": StandardScaler()}, {}])
def test_reordered_or_missing_columns_raise(data, prep):
    X, y, _ = data
    pipe = Pipeline([("prep", PerModality(prep)), ("clf", tiny_clf(max_epochs=1))])
    pipe.fit(X, y)
    reordered = ModalityDict(X, clinical=X["clinical"][["volume", "age", "flag"]])
    missing = ModalityDict(X, clinical=X["clinical"][["age", "volume"]])
    # The scaler (or, for a passed-through table, the classifier) names the problem.
    with pytest.raises(ValueError, match="order|feature names"):
        pipe.predict(reordered)
    with pytest.raises(ValueError, match="volume|flag|features"):
        pipe.predict(missing)


def test_mixed_numeric_categorical_table_via_column_transformer():
    X, y, _ = make_clinical_image(categorical=True)
    with pytest.raises(TypeError, match="non-numeric column 'site'.*PerModality"):
        tiny_clf(max_epochs=1).fit(X, y)
    encode = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "volume", "flag"]),
            ("cat", OneHotEncoder(sparse_output=False), ["site"]),
        ]
    )
    pipe = Pipeline([("prep", PerModality({"clinical": encode})), ("clf", tiny_clf())])
    pipe.fit(X, y)
    assert pipe.named_steps["clf"].input_shapes_["clinical"] == (6,)
    assert list(pipe.named_steps["prep"].get_feature_names_out()["clinical"]) == [
        "num__age",
        "num__volume",
        "num__flag",
        "cat__site_A",
        "cat__site_B",
        "cat__site_C",
    ]
    assert pipe.score(X, y) > 0.7


# ----------------------------------------------------------------------
# scikit-learn contract


def test_get_params_lists_nested_encoder_and_fusion_params():
    clf = tiny_clf(fusion=LowRankTensorFusion())
    params = clf.get_params(deep=True)
    assert params["encoders__clinical__hidden_sizes"] == (8,)
    assert params["encoders__image__channels"] == (4,)
    assert "fusion__rank" in params
    pipe_params = tiny_pipeline().get_params(deep=True)
    assert pipe_params["clf__encoders__clinical__hidden_sizes"] == (8,)
    assert pipe_params["prep__clinical__with_mean"] is True
    clf.set_params(encoders__clinical__hidden_sizes=(2,), fusion__rank=3, lr=0.1)
    assert clf.encoders["clinical"].hidden_sizes == (2,)
    assert clf.fusion.rank == 3 and clf.lr == 0.1


def test_clone_and_check_is_fitted(fitted_pipeline):
    clf = fitted_pipeline.named_steps["clf"]
    for fitted in [clf, fitted_pipeline.named_steps["prep"], fitted_pipeline]:
        check_is_fitted(fitted)
        fresh = clone(fitted)
        with pytest.raises(NotFittedError):
            check_is_fitted(fresh)
    fresh = clone(clf)
    assert fresh.get_params(deep=False).keys() == clf.get_params(deep=False).keys()
    assert fresh.encoders["clinical"] is not clf.encoders["clinical"]
    assert fresh.encoders["clinical"].hidden_sizes == (8,)
    with pytest.raises(NotFittedError):
        fresh.predict_proba({"clinical": np.zeros((2, 3)), "image": np.zeros((2, 1, 8, 8))})


def test_pickle_unfitted_and_fitted(data, fitted_pipeline):
    X, _, _ = data
    unfitted = pickle.loads(pickle.dumps(tiny_pipeline()))
    assert unfitted.get_params()["clf__encoders__clinical__hidden_sizes"] == (8,)
    restored = pickle.loads(pickle.dumps(fitted_pipeline))
    np.testing.assert_array_equal(restored.predict_proba(X), fitted_pipeline.predict_proba(X))
    np.testing.assert_array_equal(restored.predict(X), fitted_pipeline.predict(X))


def test_tags_say_dict_input():
    for estimator in [I2M2Classifier(), PerModality({})]:
        tags = get_tags(estimator)
        assert tags.input_tags.dict and not tags.input_tags.two_d_array
        assert tags.requires_fit
    tags = get_tags(I2M2Classifier())
    assert tags.estimator_type == "classifier"
    assert tags.classifier_tags.multi_class and tags.classifier_tags.multi_label
    assert tags.target_tags.multi_output and tags.target_tags.single_output
    # Partial NaN is refused (an all-NaN row is a missing modality); sparse
    # modalities are densified.
    assert not tags.input_tags.allow_nan and tags.input_tags.sparse
    assert get_tags(PerModality({"a": StandardScaler()})).input_tags.allow_nan
    assert not get_tags(PerModality({"a": PCA()})).input_tags.allow_nan


def test_calibration_of_a_frozen_fitted_classifier(data, fitted_pipeline):
    X, y, _ = data
    X_cal, y_cal, _ = make_clinical_image(seed=1)
    before = fitted_pipeline.predict_proba(X)
    calibrated = CalibratedClassifierCV(FrozenEstimator(fitted_pipeline), method="sigmoid")
    calibrated.fit(X_cal, y_cal)
    proba = calibrated.predict_proba(X)
    assert proba.shape == (len(y), 2)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    # Calibration is a monotonic map of the classifier's score and does not refit it.
    steps = np.diff(proba[np.argsort(before[:, 1]), 1])
    assert (steps >= -1e-12).all() or (steps <= 1e-12).all()
    np.testing.assert_array_equal(fitted_pipeline.predict_proba(X), before)


# ----------------------------------------------------------------------
# scikit-learn's estimator checks
#
# They feed 2-D arrays, so for an estimator tagged as taking a dict they run
# nothing. These test subclasses pass each array as a single modality
# {"x": X} (and take it back out of a transform), so that the checks reach
# the real fit / predict / transform code.


def _as_modalities(X):
    # scipy's dok_matrix is a dict: keep it an array, a modality of its own.
    return X if isinstance(X, Mapping) and not sp.issparse(X) else {"x": X}


class OneModalityI2M2(I2M2Classifier):
    """I2M2Classifier fed one modality ``{"x": X}`` by scikit-learn's array checks."""

    def fit(self, X, y, sample_weight=None):
        return super().fit(_as_modalities(X), y, sample_weight=sample_weight)

    def predict_proba(self, X):
        return super().predict_proba(_as_modalities(X))

    def predict_log_proba(self, X):
        return super().predict_log_proba(_as_modalities(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array, tags.input_tags.dict = True, False
        return tags


class OneModalityPerModality(PerModality):
    """PerModality fed one modality ``{"x": X}`` by scikit-learn's array checks."""

    def fit(self, X, y=None, **params):
        return super().fit(_as_modalities(X), y, **params)

    def fit_transform(self, X, y=None, **params):
        return super().fit_transform(_as_modalities(X), y, **params)["x"]

    def transform(self, X, **params):
        return super().transform(_as_modalities(X), **params)["x"]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array, tags.input_tags.dict = True, False
        return tags


_NO_N_FEATURES_IN = (
    "X is a dict of modalities: there is no single n_features_in_ (see input_shapes_)"
)

_WEIGHTS_ARE_NOT_REPEATS = (
    "a row of weight 2 is not two rows: mini-batches, the validation split and inner folds "
    "draw rows, not weight (weights of 0 do equal dropped rows: tests/test_targets.py); "
    "the check also sets cv, the inner-fold count, to a list of splits"
)

_FLOAT32_ROWS = (
    "the model computes in float32, and a float32 matrix product may round a row differently "
    "by its position in the batch (4.8e-7 in the logits here, more than the check's rtol of "
    "1e-7); test_predictions_do_not_depend_on_the_order_of_the_rows checks the order at "
    "float32 precision"
)

EXPECTED_FAILED_CHECKS = {
    OneModalityI2M2: {
        "check_methods_sample_order_invariance": _FLOAT32_ROWS,
        "check_n_features_in": _NO_N_FEATURES_IN,
        "check_n_features_in_after_fitting": _NO_N_FEATURES_IN,
        "check_sample_weight_equivalence_on_dense_data": _WEIGHTS_ARE_NOT_REPEATS,
        "check_sample_weight_equivalence_on_sparse_data": _WEIGHTS_ARE_NOT_REPEATS,
    },
    OneModalityPerModality: {
        "check_n_features_in": _NO_N_FEATURES_IN,
        "check_n_features_in_after_fitting": _NO_N_FEATURES_IN,
    },
}


# Where scikit-learn offers it (>= 1.8), an expected failure that passes is an
# error, so that a stale entry above gets noticed; older releases only mark them xfail.
_XFAIL_STRICT = (
    {"xfail_strict": True}
    if "xfail_strict" in inspect.signature(parametrize_with_checks).parameters
    else {}
)


@parametrize_with_checks(
    [
        OneModalityI2M2(max_epochs=20, lr=1e-2, random_state=0),
        OneModalityPerModality({"x": StandardScaler()}),
    ],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS[type(estimator)],
    **_XFAIL_STRICT,
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_predictions_do_not_depend_on_the_order_of_the_rows():
    rng = np.random.RandomState(0)
    X, y = {"x": rng.randn(60, 4)}, rng.randint(0, 3, 60)
    clf = I2M2Classifier(max_epochs=20, random_state=0).fit(X, y)
    order = rng.permutation(60)
    np.testing.assert_allclose(
        clf.predict_proba({"x": X["x"][order]}), clf.predict_proba(X)[order], rtol=1e-5
    )
    np.testing.assert_array_equal(clf.predict({"x": X["x"][order]}), clf.predict(X)[order])


# ----------------------------------------------------------------------
# The README's workflow


def test_canonical_workflow_end_to_end():
    """Pipeline(PerModality, I2M2Classifier) on a table plus images, searched with GroupKFold."""
    X, y, patients = make_clinical_image(n_patients=30, visits=2, categorical=True)
    pipe = Pipeline(
        [
            (
                "prep",
                PerModality(
                    {
                        "clinical": ColumnTransformer(
                            [
                                ("num", StandardScaler(), ["age", "volume", "flag"]),
                                (
                                    "cat",
                                    OneHotEncoder(sparse_output=False, handle_unknown="ignore"),
                                    ["site"],
                                ),
                            ]
                        )
                    }
                ),
            ),
            ("clf", tiny_clf(max_epochs=4)),
        ]
    )
    search = GridSearchCV(
        pipe,
        {
            "clf__dependencies": ["both", "inter"],
            "clf__encoders__clinical__hidden_sizes": [(4,), (8,)],
        },
        cv=GroupKFold(n_splits=2),
        scoring="roc_auc",
        n_jobs=2,
    )
    search.fit(X, y, groups=patients)
    assert len(search.cv_results_["params"]) == 4
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    best = search.best_estimator_
    assert (
        best.named_steps["clf"].encoders_["clinical"].hidden_sizes
        == search.best_params_["clf__encoders__clinical__hidden_sizes"]
    )
    assert best.named_steps["clf"].dependencies == search.best_params_["clf__dependencies"]
    assert search.score(X, y) > 0.7
    assert search.predict(X).shape == y.shape
