"""Outcome types as plug-ins, and the straight fit: describe -> train -> one store."""

import dataclasses
import inspect
import json

import numpy as np
import pytest
import torch
from sklearn.base import RegressorMixin
from sklearn.model_selection import KFold
from skorch import NeuralNetRegressor

import sk_i2m2
from sk_i2m2 import I2M2Classifier, I2M2Regressor, I2M2SurvivalAnalysis, to_onnx
from sk_i2m2._base import I2M2Base
from sk_i2m2._fit import FitDescription, describe_fit
from sk_i2m2._registry import REGISTRY
from sk_i2m2.exceptions import ModelFileError
from sk_i2m2.inspection import dependency_report
from sk_i2m2.nn.cox import combine_log_risk
from sk_i2m2.nn.ensemble import MeanFoldEnsemble
from sk_i2m2.outcomes import (
    ClassesOutcome,
    CoxOutcome,
    GaussianOutcome,
    LabelsOutcome,
    Outcome,
    StageOptions,
)
from sk_i2m2.outcomes._base import validation_split
from sk_i2m2.training.net import ACCELERATED, StageNetMixin, plain_module

FAST = dict(max_epochs=3, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    X = {"a": rng.randn(60, 3), "b": rng.randn(60, 2)}
    return X, rng


def test_every_outcome_type_is_registered_and_implements_the_interface():
    assert {"classes", "labels", "gaussian", "cox"} <= set(REGISTRY.names("outcome"))
    for name in ("classes", "labels", "gaussian", "cox"):
        outcome = REGISTRY.create("outcome", name)
        assert isinstance(outcome, Outcome)
        assert not inspect.isabstract(type(outcome))
        # It takes the estimator parameters it names, and keeps them.
        params = {name: getattr(outcome, name) for name in type(outcome).parameters}
        assert vars(type(outcome)(**params)) == vars(outcome)


@pytest.mark.parametrize(
    "estimator, outcome",
    [
        (I2M2Classifier, ClassesOutcome),
        (I2M2Regressor, GaussianOutcome),
        (I2M2SurvivalAnalysis, CoxOutcome),
    ],
)
def test_each_estimator_names_its_outcome_and_is_registered(estimator, outcome):
    assert estimator._outcome_type is outcome
    assert REGISTRY.class_named("estimator", estimator.__name__) is estimator
    # Every parameter the outcome reads is a parameter of the estimator.
    assert set(outcome.parameters) <= set(estimator().get_params())


def test_the_classifier_picks_the_labels_outcome_for_a_multilabel_target():
    clf = I2M2Classifier()
    assert type(clf._target_outcome(np.zeros(4))) is ClassesOutcome
    assert type(clf._target_outcome(np.zeros((4, 3)))) is LabelsOutcome
    assert type(clf._target_outcome(np.zeros((4, 1)))) is ClassesOutcome


def test_calibration_returns_its_attributes_and_sets_nothing():
    outcome = ClassesOutcome()
    options = outcome.stage_options({"classes_": np.array([0, 1])}, np.array([0, 1, 1, 0]), None)
    assert isinstance(options, StageOptions)
    assert outcome.calibrate([], options, training_rows=None) == {
        "temperature_": 1.0,
        "expert_weights_": [],  # no held-out rows: the fit weighs every expert 1
        "calibration_loss_": None,
    }


def test_describe_fit_is_immutable_and_changes_nothing(data):
    X, rng = data
    y = rng.randint(0, 2, 60)
    clf = I2M2Classifier(**FAST).fit(X, y)
    before = dict(vars(clf))
    fit = describe_fit(clf, X, y)
    assert isinstance(fit, FitDescription)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.plan = None
    assert vars(clf).keys() == before.keys()
    assert all(vars(clf)[k] is v for k, v in before.items())
    assert fit.plan.seed == clf.seed_  # the same random_state draws the same seed
    assert fit.architecture.n_outputs == 2 and fit.target["classes_"].tolist() == [0, 1]


class _CountingClassifier(I2M2Classifier):
    """Records every fitted attribute set on it."""

    def __setattr__(self, name, value):
        if name.endswith("_") and not name.startswith("_"):
            vars(self).setdefault("_set_log", []).append(name)
        super().__setattr__(name, value)


def test_fitted_attributes_are_assigned_once_and_a_refit_replaces_them(data):
    X, rng = data
    y = rng.randint(0, 3, 60)
    clf = _CountingClassifier(**FAST, warm_start=True)
    clf.fit(X, y)
    log = clf._set_log
    assert len(log) == len(set(log))
    assert set(log) == {k for k in vars(clf) if k.endswith("_") and not k.startswith("_")}
    assert "pretrained_experts_" in log
    # A refit without warm start leaves no attribute of the previous fit behind.
    clf._set_log = []
    clf.set_params(warm_start=False).fit(X, y)
    assert not hasattr(clf, "pretrained_experts_")
    assert len(clf._set_log) == len(set(clf._set_log))


# ----------------------------------------------------------------------
# A fourth outcome type, written outside the package: Poisson counts.
# Nothing in sk_i2m2 changes for it.


def _poisson_nll(log_rate, y):
    return torch.exp(log_rate) - y * log_rate


class _ExpertsPoissonLoss(torch.nn.Module):
    def per_expert_sums(self, outputs, y, available=None, sample_weight=None):
        losses = _poisson_nll(outputs[..., 0], y[:, 0])
        weights = torch.ones_like(losses)
        if available is not None:
            weights = weights * available
        if sample_weight is not None:
            weights = weights * sample_weight
        return (losses * weights).sum(1), weights.sum(1)

    def forward(self, outputs, y, available=None, sample_weight=None):
        total, weight = self.per_expert_sums(outputs, y, available, sample_weight)
        return (total / weight.clamp_min(1e-12)).sum()


class _ProductPoissonLoss(torch.nn.Module):
    def forward(self, outputs, y, available=None, sample_weight=None):
        log_rate = combine_log_risk(outputs, available)[:, 0]
        losses = _poisson_nll(log_rate, y[:, 0])
        if sample_weight is None:
            return losses.mean()
        return (losses * sample_weight).sum() / sample_weight.sum()


class _PoissonStageNet(StageNetMixin, NeuralNetRegressor):
    _target_dtype = torch.float32

    def evaluation_step(self, batch, training=False):
        outputs = super().evaluation_step(batch, training=training)
        return combine_log_risk(outputs, plain_module(self.module_).availability(batch[0]))


class _PoissonOutcome(Outcome):
    parameters = ("cv", "validation_fraction")
    target_attributes = ("max_count_",)

    def check_target(self, y, n_samples, sample_weight=None):
        y = np.asarray(y, dtype=np.float64).reshape(n_samples, 1)
        if (y < 0).any():
            raise ValueError("counts are non-negative")
        return {"max_count_": float(y.max())}, y.astype(np.float32)

    def n_outputs(self, attributes):
        return 1

    def stage_options(self, attributes, y, sample_weight):
        return StageOptions(
            net=_PoissonStageNet, criteria=(_ExpertsPoissonLoss, _ProductPoissonLoss)
        )

    def n_folds(self, y):
        return None if self.cv in (None, "auto") else self.cv

    def splits(self, y, n_folds, seed, attributes):
        if n_folds:
            return list(KFold(n_folds, shuffle=True, random_state=seed).split(y))
        return [validation_split(y, None, self.validation_fraction, seed)]

    def fold_ensemble(self, modules):
        return MeanFoldEnsemble(modules)

    def combine(self, outputs, available=None):
        return combine_log_risk(outputs, available)

    def calibrate(self, held_out, options, training_rows):
        return {"temperature_": 1.0}


class _I2M2PoissonRegressor(RegressorMixin, I2M2Base):
    _outcome_type = _PoissonOutcome

    def fit(self, X, y, sample_weight=None):
        return self._fit(X, y, sample_weight)

    def predict(self, X):
        outputs, available = self._expert_logits(X)
        return torch.exp(self._fitted_outcome().combine(outputs.double(), available))[:, 0].numpy()


@pytest.mark.parametrize("cv", [None, 3])
def test_a_new_outcome_type_plugs_in_without_touching_the_package(data, tmp_path, cv):
    X, rng = data
    rate = np.exp(0.8 * X["a"][:, 0] + 0.5 * X["b"][:, 1])
    y = rng.poisson(rate)
    model = _I2M2PoissonRegressor(max_epochs=60, lr=0.05, cv=cv, random_state=0, device="cpu")
    model.fit(X, y)
    assert model.max_count_ == y.max() and model.n_folds_ == (cv or 1)
    predicted = model.predict(X)
    assert predicted.shape == (60,) and np.corrcoef(predicted, rate)[0, 1] > 0.5
    # save / load find the class in the registry and the target in the outcome.
    model.save(tmp_path / "poisson")
    loaded = _I2M2PoissonRegressor.load(tmp_path / "poisson")
    np.testing.assert_allclose(loaded.predict(X), predicted, rtol=1e-5)


# ----------------------------------------------------------------------
# Export: the outcome type gives the step from the experts' outputs to the
# predictions, so to_onnx needs no branch on the estimator.


@pytest.mark.parametrize("estimator", ["multilabel", "survival"])
def test_onnx_export_takes_the_prediction_head_from_the_outcome(data, tmp_path, estimator):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    X, _ = data
    rng = np.random.RandomState(1)
    if estimator == "multilabel":
        y = np.column_stack([X["a"][:, 0] > 0, X["b"][:, 0] > 0, rng.rand(60) > 0.5]).astype(int)
        model = I2M2Classifier(**FAST).fit(X, y)
        expected, names = model.predict_proba(X), ["probabilities"]
    else:
        time = np.exp(-X["a"][:, 0] + 0.3 * rng.randn(60))
        y = np.array(list(zip(rng.rand(60) > 0.3, time)), dtype=[("event", bool), ("time", float)])
        model = I2M2SurvivalAnalysis(**FAST).fit(X, y)
        expected, names = model.predict(X), ["risk_score"]
    path = to_onnx(model, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [output.name for output in session.get_outputs()] == names
    (predicted,) = session.run(None, {m: v.astype(np.float32) for m, v in X.items()})
    np.testing.assert_allclose(predicted, expected, rtol=1e-4, atol=1e-5)


def test_an_outcome_without_a_prediction_head_is_not_exported(data, tmp_path):
    X, rng = data
    model = _I2M2PoissonRegressor(max_epochs=1, random_state=0, device="cpu")
    model.fit(X, rng.poisson(1.0, size=60))
    with pytest.raises(ValueError, match="_PoissonOutcome.*defines no prediction_head"):
        to_onnx(model, tmp_path / "model.onnx")


def test_load_finds_a_registered_estimator_class_by_its_saved_name(data, tmp_path):
    X, rng = data
    model = _I2M2PoissonRegressor(max_epochs=1, random_state=0, device="cpu")
    model.fit(X, rng.poisson(1.0, size=60))
    model.save(tmp_path / "poisson")
    loaded = sk_i2m2.load(tmp_path / "poisson")
    assert type(loaded) is _I2M2PoissonRegressor
    np.testing.assert_allclose(loaded.predict(X), model.predict(X), rtol=1e-5)
    # A name the registry does not hold as an estimator is refused, even a package class.
    config_path = tmp_path / "poisson" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "estimator": "PerModality"}))
    with pytest.raises(ModelFileError, match="'PerModality', which is not an sk-i2m2 estimator"):
        sk_i2m2.load(tmp_path / "poisson")


def test_dependency_report_refuses_a_class_scorer_for_a_survival_model(data):
    X, _ = data
    y = np.array(
        list(zip(np.arange(60) % 2 == 0, np.arange(1.0, 61.0))), dtype=[("e", bool), ("t", float)]
    )
    with pytest.raises(ValueError, match="'accuracy' scores class predictions; a survival model"):
        dependency_report(I2M2SurvivalAnalysis(), X, y, scoring="accuracy")


@pytest.mark.parametrize(
    "outcome, attributes, y",
    [
        (ClassesOutcome(), {"classes_": np.array([0, 1])}, np.array([0, 1, 1, 0])),
        (LabelsOutcome(), {"classes_": np.arange(2)}, np.eye(2, dtype=np.float32)),
        (GaussianOutcome(), {"n_outputs_": 1}, np.zeros((4, 1), dtype=np.float32)),
    ],
)
def test_each_outcome_net_has_a_data_parallel_variant(outcome, attributes, y):
    # The estimators of these outcomes take an accelerator.
    net = outcome.stage_options(attributes, y, None).net
    assert issubclass(ACCELERATED[net], net)
