"""I2M2Regressor: the product of Gaussian experts, training, prediction, persistence."""

import math
from collections.abc import Mapping

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.dummy import DummyRegressor
from sklearn.metrics import r2_score
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import parametrize_with_checks

from sk_i2m2 import I2M2Classifier, I2M2Regressor
from sk_i2m2.datasets import make_multimodal_regression
from sk_i2m2.exceptions import ModelFileError
from sk_i2m2.nn.ensemble import GaussianFoldEnsemble
from sk_i2m2.nn.losses import ExpertsGaussianNLLLoss, ProductOfGaussiansNLLLoss
from sk_i2m2.nn.product import combine_gaussian, gaussian_fold_mean

# Small, fast settings of the regressor tests.
# lr=1e-2 for batches of 16, which the small-cohort "auto" batch would replace.
TINY = dict(
    max_epochs=15,
    lr=1e-2,
    batch_size=16,
    cv=None,
    n_iter_no_change=5,
    random_state=0,
    device="cpu",
)


def _outputs(means, variances):
    """Expert outputs (n_experts, n_samples, 2): means, then log-variances."""
    means = torch.tensor(means, dtype=torch.float64)
    variances = torch.tensor(variances, dtype=torch.float64)
    return torch.stack([means, variances.log()], dim=-1)


@pytest.fixture(scope="module")
def intra_data():
    # Intra-dominated: R² of the best model is 2/3.
    X, y = make_multimodal_regression(
        300, n_features=4, intra_strength=1.0, inter_strength=0.0, random_state=0
    )
    train = {m: x[:200] for m, x in X.items()}
    test = {m: x[200:] for m, x in X.items()}
    return train, y[:200], test, y[200:]


@pytest.fixture(scope="module")
def fitted(intra_data):
    X, y, _, _ = intra_data
    return I2M2Regressor(**TINY).fit(X, y)


# ----------------------------------------------------------------------
# The product of Gaussian experts


def test_product_is_the_precision_weighted_mean():
    # Expert 1: N(1, 2); expert 2: N(4, 0.5); expert 3: N(-2, 4) only on sample 1.
    outputs = _outputs([[1.0, 1.0], [4.0, 4.0], [-2.0, -2.0]], [[2.0, 2.0], [0.5, 0.5], [4, 4]])
    available = torch.tensor([[True, True], [True, True], [False, True]])
    mean, log_var = combine_gaussian(outputs, available).unbind(-1)
    # Sample 0: precision 1/2 + 2 = 2.5, mean (1/2 * 1 + 2 * 4) / 2.5 = 3.4.
    # Sample 1: precision 2.75, mean (0.5 + 8 - 0.5) / 2.75 = 8 / 2.75.
    np.testing.assert_allclose(mean.numpy(), [3.4, 8 / 2.75], rtol=1e-12)
    np.testing.assert_allclose(log_var.exp().numpy(), [1 / 2.5, 1 / 2.75], rtol=1e-12)
    # An abstaining expert's outputs do not matter, NaN included.
    hidden = outputs.clone()
    hidden[2, 0] = float("nan")
    torch.testing.assert_close(
        combine_gaussian(hidden, available), combine_gaussian(outputs, available)
    )
    # No mask: every expert counts; one expert: its own Gaussian.
    mean, log_var = combine_gaussian(outputs).unbind(-1)
    assert math.isclose(mean[0].item(), (0.5 + 8 - 0.5) / 2.75, rel_tol=1e-12)
    torch.testing.assert_close(combine_gaussian(outputs[:1]), outputs[0])


def test_product_is_per_target_and_fold_mean_is_the_geometric_mean():
    # Two targets: means then log-variances; the targets do not mix.
    two = torch.tensor(
        [[[1.0, 10.0, math.log(2.0), 0.0]], [[4.0, 20.0, math.log(0.5), 0.0]]], dtype=torch.float64
    )
    product = combine_gaussian(two)[0]
    np.testing.assert_allclose(product[:2].numpy(), [3.4, 15.0])
    np.testing.assert_allclose(product[2:].exp().numpy(), [0.4, 0.5])
    # The normalised geometric mean of N(1, 2) and N(4, 0.5): mean precision
    # (0.5 + 2) / 2 = 1.25, mean (0.5 * 1 + 2 * 4) / 2.5 = 3.4.
    folds = _outputs([[1.0]], [[2.0]]), _outputs([[4.0]], [[0.5]])
    mean, log_var = gaussian_fold_mean(torch.stack(folds))[0, 0]
    assert math.isclose(mean.item(), 3.4) and math.isclose(log_var.exp().item(), 1 / 1.25)


def test_gaussian_losses():
    torch.manual_seed(0)
    outputs = torch.randn(3, 8, 2, dtype=torch.float64)
    y = torch.randn(8, 1, dtype=torch.float64)
    mean, log_var = outputs.unbind(-1)
    reference = torch.nn.GaussianNLLLoss(full=True, eps=0.0)
    stage1 = ExpertsGaussianNLLLoss()
    expected = [reference(mean[k], y[:, 0], log_var[k].exp()) for k in range(3)]
    torch.testing.assert_close(stage1.per_expert(outputs, y), torch.stack(expected))
    torch.testing.assert_close(stage1(outputs, y), sum(expected))
    # The product's loss is the NLL of the precision-weighted Gaussian.
    product_mean, product_log_var = combine_gaussian(outputs).unbind(-1)
    torch.testing.assert_close(
        ProductOfGaussiansNLLLoss()(outputs, y),
        reference(product_mean, y[:, 0], product_log_var.exp()),
    )
    # An expert is scored on the samples it sees; a weight of 0 drops a row.
    available = torch.ones(3, 8, dtype=torch.bool)
    available[0, :3] = False
    seen = stage1.per_expert(outputs, y, available)
    torch.testing.assert_close(seen[0], reference(mean[0, 3:], y[3:, 0], log_var[0, 3:].exp()))
    weight = torch.tensor([0.0, 0, 0, 1, 1, 1, 1, 1], dtype=torch.float64)
    torch.testing.assert_close(
        stage1(outputs, y, sample_weight=weight), stage1(outputs[:, 3:], y[3:])
    )
    torch.testing.assert_close(
        ProductOfGaussiansNLLLoss()(outputs, y, sample_weight=weight),
        ProductOfGaussiansNLLLoss()(outputs[:, 3:], y[3:]),
    )


# ----------------------------------------------------------------------
# Fit and predict


def test_fit_beats_the_dummy_regressor_and_experts_are_gaussians(intra_data, fitted):
    X, y, X_test, y_test = intra_data
    dummy = DummyRegressor().fit(X["m0"], y).score(X_test["m0"], y_test)
    score = fitted.score(X_test, y_test)
    assert score > dummy + 0.35, (score, dummy)
    assert fitted.expert_names_ == ["m0", "m1", "inter"]
    assert fitted.n_outputs_ == 1 and fitted.y_mean_.shape == fitted.y_scale_.shape == (1,)
    assert 0.5 <= fitted.temperature_ <= 20
    mean, std = fitted.predict(X_test, return_std=True)
    assert mean.shape == std.shape == (100,) and (std > 0).all()
    np.testing.assert_array_equal(fitted.predict(X_test), mean)
    assert math.isclose(fitted.score(X_test, y_test), r2_score(y_test, mean))
    # The prediction is the precision-weighted mean of the experts' Gaussians
    # (in the units of y: the product commutes with standardisation).
    means, stds = fitted.expert_predict(X_test, return_std=True)
    assert sorted(means) == sorted(stds) == ["inter", "m0", "m1"]
    precision = sum(1 / stds[k] ** 2 for k in means)
    np.testing.assert_allclose(mean, sum(means[k] / stds[k] ** 2 for k in means) / precision)
    np.testing.assert_allclose(std, np.sqrt(fitted.temperature_ / precision), rtol=1e-6)
    # Each intra expert alone predicts less well than the product.
    for name in ("m0", "m1"):
        assert r2_score(y_test, means[name]) < score
    pretrain = fitted.expert_predict(X_test, stage="pretrain")
    assert pretrain.keys() == means.keys()
    assert fitted.pretrain_net_.history[-1, "valid_loss_m0"] > 0


def test_multi_output_targets_and_column_vector(intra_data):
    X, y, X_test, _ = intra_data
    Y = np.c_[y, -3 * y + 100]
    reg = I2M2Regressor(**{**TINY, "max_epochs": 3}).fit(X, Y)
    assert reg.n_outputs_ == 2 and reg.module_.experts["m0"].head.out_features == 4
    np.testing.assert_allclose(reg.y_mean_, Y.mean(0))
    mean, std = reg.predict(X_test, return_std=True)
    assert mean.shape == std.shape == (100, 2)
    means, stds = reg.expert_predict(X_test, return_std=True)
    assert means["inter"].shape == stds["m1"].shape == (100, 2)
    # A column vector is one target: 1-D predictions, as MLPRegressor gives.
    column = I2M2Regressor(**{**TINY, "max_epochs": 1}).fit(X, y[:, None])
    assert column.predict(X_test).shape == (100,)


def test_cross_fitted_folds_are_one_product_of_gaussians(intra_data, tmp_path):
    X, y, X_test, _ = intra_data
    reg = I2M2Regressor(**{**TINY, "max_epochs": 2, "cv": 2}).fit(X, y)
    assert reg.n_folds_ == 2 and isinstance(reg.module_, GaussianFoldEnsemble)
    assert len(reg.fold_nets_) == 2
    assert reg.expert_predict(X_test, stage="pretrain")["m0"].shape == (100,)
    reg.save(tmp_path / "folds")
    loaded = I2M2Regressor.load(tmp_path / "folds")
    np.testing.assert_array_equal(loaded.predict(X_test), reg.predict(X_test))


# The fixture's inter expert never saw a missing modality (its null embedding is untrained).
@pytest.mark.filterwarnings("ignore:Some samples miss modality 'm0'")
def test_missing_modality_leaves_the_product_of_the_other_experts(fitted, intra_data):
    _, _, X_test, _ = intra_data
    X = {m: x.copy() for m, x in X_test.items()}
    X["m0"][:30] = np.nan  # 30 samples without m0
    mean, std = fitted.predict(X, return_std=True)
    means, stds = fitted.expert_predict(X, return_std=True)
    assert np.isnan(means["m0"][:30]).all() and np.isfinite(means["m0"][30:]).all()
    assert np.isnan(stds["m0"][:30]).all()
    # Without m0, the product is that of m1 and inter (precision 0 for m0).
    precision = 1 / stds["m1"][:30] ** 2 + 1 / stds["inter"][:30] ** 2
    expected = (
        means["m1"][:30] / stds["m1"][:30] ** 2 + means["inter"][:30] / stds["inter"][:30] ** 2
    )
    np.testing.assert_allclose(mean[:30], expected / precision, rtol=1e-5)
    np.testing.assert_allclose(std[:30], np.sqrt(fitted.temperature_ / precision), rtol=1e-5)
    # Other samples are untouched; leaving the modality out entirely is the same.
    np.testing.assert_allclose(mean[30:], fitted.predict(X_test)[30:], rtol=1e-6)
    only_m1 = fitted.predict({"m1": X_test["m1"]})
    np.testing.assert_allclose(only_m1[:30], mean[:30], rtol=1e-5)


def test_fit_with_missing_rows_and_intra_only(intra_data):
    X, y, X_test, y_test = intra_data
    X = {m: x.copy() for m, x in X.items()}
    X["m1"][::4] = np.nan
    reg = I2M2Regressor(dependencies="intra", **TINY).fit(X, y)
    assert reg.expert_names_ == ["m0", "m1"]
    assert math.isclose(reg.missing_rate_["m1"], 0.25)
    assert reg.score(X_test, y_test) > 0.3


def test_save_load_round_trip(fitted, intra_data, tmp_path):
    _, _, X_test, _ = intra_data
    fitted.save(tmp_path / "model")
    loaded = I2M2Regressor.load(tmp_path / "model")
    assert loaded.pretrain_net_ is None and loaded.temperature_ == fitted.temperature_
    np.testing.assert_array_equal(loaded.y_mean_, fitted.y_mean_)
    for a, b in zip(
        loaded.predict(X_test, return_std=True), fitted.predict(X_test, return_std=True)
    ):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(
        loaded.expert_predict(X_test)["inter"], fitted.expert_predict(X_test)["inter"]
    )
    with pytest.raises(ModelFileError, match="holds an I2M2Regressor; load it with I2M2Regressor"):
        I2M2Classifier.load(tmp_path / "model")
    with pytest.raises(ValueError, match="needs pretrain_net_"):
        loaded.expert_predict(X_test, stage="pretrain")


@pytest.mark.parametrize(
    "y, message",
    [
        (None, "requires y to be passed"),
        (np.r_[np.nan, np.zeros(199)], "Input y contains NaN"),
        (np.zeros(10), "y has 10 samples but the modalities have 200"),
        (np.zeros((200, 2, 2)), "Found array with dim 3"),
        (np.array(["a"] * 200), "could not convert"),
    ],
    ids=["none", "nan", "length", "3-d", "strings"],
)
def test_bad_targets_raise_before_training_and_keep_the_fit(fitted, intra_data, y, message):
    X, _, X_test, _ = intra_data
    before = fitted.predict(X_test)
    with pytest.raises(ValueError, match=message):
        fitted.fit(X, y)
    np.testing.assert_array_equal(fitted.predict(X_test), before)


def test_params_tags_and_errors():
    reg = I2M2Regressor()
    assert "class_weight" not in reg.get_params() and reg.calibration == "temperature"
    tags = get_tags(reg)
    assert tags.estimator_type == "regressor" and tags.target_tags.multi_output
    assert tags.input_tags.dict and not tags.input_tags.two_d_array
    X, y = make_multimodal_regression(12, n_features=2, random_state=0)
    with pytest.raises(ValueError, match="cv=10 folds need at least 20 samples"):
        I2M2Regressor(cv=10).fit(X, y)
    with pytest.raises(ValueError, match="stage must be 'final' or 'pretrain'"):
        I2M2Regressor(**{**TINY, "max_epochs": 1}).fit(X, y).expert_predict(X, stage="best")


def test_make_multimodal_regression_regimes():
    X, y = make_multimodal_regression(20000, intra_strength=0.0, inter_strength=2.0, random_state=0)
    a, b = X["m0"].astype(np.float64), X["m1"].astype(np.float64)
    again, y_again = make_multimodal_regression(
        20000, intra_strength=0.0, inter_strength=2.0, random_state=0
    )
    np.testing.assert_array_equal(y, y_again)
    np.testing.assert_array_equal(X["m1"], again["m1"])
    # Inter only: no feature of either modality correlates with y ...
    for x in (a, b):
        assert np.abs([np.corrcoef(x[:, j], y)[0, 1] for j in range(10)]).max() < 0.03
    # ... but the products of a feature of each explain R² 0.8 (the best possible).
    products = np.c_[(a[:, :, None] * b[:, None, :]).reshape(len(y), -1), np.ones(len(y))]
    coef, *_ = np.linalg.lstsq(products, y, rcond=None)
    assert abs(r2_score(y, products @ coef) - 0.8) < 0.02
    # Intra only: a linear model of both modalities reaches about R² 2/3.
    X, y = make_multimodal_regression(20000, intra_strength=1.0, inter_strength=0.0, random_state=1)
    features = np.hstack([X["m0"], X["m1"]])
    coef, *_ = np.linalg.lstsq(np.c_[features, np.ones(len(y))], y, rcond=None)
    r2 = r2_score(y, np.c_[features, np.ones(len(y))] @ coef)
    assert abs(r2 - 2 / 3) < 0.02


# ----------------------------------------------------------------------
# scikit-learn's estimator checks (see tests/test_sklearn.py for the classifier)


def _as_modalities(X):
    # scipy's dok_matrix is a dict: keep it an array, a modality of its own.
    return X if isinstance(X, Mapping) and not sp.issparse(X) else {"x": X}


class OneModalityI2M2Regressor(I2M2Regressor):
    """I2M2Regressor fed one modality ``{"x": X}`` by scikit-learn's array checks."""

    def fit(self, X, y, sample_weight=None):
        return super().fit(_as_modalities(X), y, sample_weight)

    def predict(self, X, return_std=False):
        return super().predict(_as_modalities(X), return_std)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array, tags.input_tags.dict = True, False
        return tags


_WEIGHTS_ARE_NOT_REPEATS = (
    "a row of weight 2 is not two rows: mini-batches and the validation split draw rows, "
    "not weight (weights of 0 do equal dropped rows: test_zero_weight_equals_a_dropped_row)"
)

_NO_N_FEATURES_IN = (
    "X is a dict of modalities: there is no single n_features_in_ (see input_shapes_)"
)


@parametrize_with_checks(
    [OneModalityI2M2Regressor(max_epochs=10, lr=1e-2, cv=None, random_state=0)],
    expected_failed_checks=lambda estimator: {
        "check_n_features_in": _NO_N_FEATURES_IN,
        "check_n_features_in_after_fitting": _NO_N_FEATURES_IN,
        "check_sample_weight_equivalence_on_dense_data": _WEIGHTS_ARE_NOT_REPEATS,
        "check_sample_weight_equivalence_on_sparse_data": _WEIGHTS_ARE_NOT_REPEATS,
    },
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_zero_weight_equals_a_dropped_row():
    X, y = make_multimodal_regression(n_samples=120, random_state=0)
    weight = np.ones(len(y))
    weight[::7] = 0
    keep = weight > 0
    params = {"max_epochs": 5, "cv": None, "random_state": 0}
    weighted = I2M2Regressor(**params).fit(X, y, sample_weight=weight)
    dropped = I2M2Regressor(**params).fit({m: v[keep] for m, v in X.items()}, y[keep])
    np.testing.assert_allclose(weighted.predict(X), dropped.predict(X), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="sample_weight"):
        I2M2Regressor(**params).fit(X, y, sample_weight=-weight)
