"""The small-cohort regime: inner cross-fitting and linear vector experts below 1000 samples."""

import numpy as np
import pytest
import torch
from conftest import make_independent

from sk_i2m2 import I2M2Classifier
from sk_i2m2._sizing import FULL_BATCH_PATIENCE, MULTILABEL_SMALL_COHORT, SMALL_COHORT
from sk_i2m2.encoders import MLPEncoder
from sk_i2m2.fusion import ConcatFusion
from sk_i2m2.nn.ensemble import FoldEnsemble
from sk_i2m2.nn.product import combine
from sk_i2m2.outcomes.classes import ClassesOutcome
from sk_i2m2.training import linear_experts
from sk_i2m2.training.flat_lbfgs import FlatLBFGS
from sk_i2m2.training.linear_experts import SOLVER_TOL


@pytest.fixture(scope="module")
def small_fit():
    X, y = make_independent(150, n_modalities=2)
    return I2M2Classifier(max_epochs=15, random_state=0).fit(X, y), X, y


def test_small_cohort_defaults_cross_fit_linear_experts(small_fit):
    clf, X, y = small_fit
    assert clf.n_folds_ == 5 and isinstance(clf.module_, FoldEnsemble)
    assert len(clf.fold_nets_) == 5
    assert clf.pretrain_net_ is clf.fold_nets_[0][0]
    assert clf.encoders_["m0"].hidden_sizes == ()  # a linear expert
    assert isinstance(clf.fusion_, ConcatFusion) and clf.fusion_.hidden_size == 16
    # Every row trained 4 of the 5 fold models and stopped the fifth.
    validation_rows = sum(len(net.train_split.keywords["valid_ds"]) for net, _ in clf.fold_nets_)
    assert validation_rows == len(y)
    assert clf.score(X, y) > 0.6


def test_fold_ensemble_is_the_product_of_fold_averaged_experts(small_fit):
    clf, X, _ = small_fit
    tensors = {m: torch.as_tensor(v) for m, v in X.items()}
    with torch.no_grad():
        folds = [fold(**tensors).log_softmax(-1) for fold in clf.module_.folds]
    expected = combine(torch.stack(folds).mean(0).double() / clf.temperature_).exp()
    np.testing.assert_allclose(clf.predict_proba(X), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_an_ensemble_saves_and_loads(small_fit, tmp_path):
    clf, X, _ = small_fit
    clf.save(tmp_path)
    loaded = I2M2Classifier.load(tmp_path)
    assert loaded.n_folds_ == 5 and loaded.fold_nets_ is None
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_pretrain_stage_experts_of_an_ensemble(small_fit):
    clf, X, _ = small_fit
    proba = clf.expert_proba(X, stage="pretrain")
    assert sorted(proba) == ["inter", "m0", "m1"]
    assert all(p.shape == (len(X["m0"]), 2) for p in proba.values())


def test_large_data_keeps_one_validation_split():
    X, y = make_independent(SMALL_COHORT, n_modalities=2)
    clf = I2M2Classifier(max_epochs=1, finetune_epochs=1, random_state=0).fit(X, y)
    assert clf.n_folds_ == 1 and clf.fold_nets_ is None
    assert clf.encoders_["m0"].hidden_sizes == (128, 64)
    assert clf.fusion_.hidden_size == 64


def test_explicit_folds_and_opting_out():
    X, y = make_independent(120, n_modalities=2)
    three = I2M2Classifier(cv=3, max_epochs=2, random_state=0).fit(X, y)
    assert three.n_folds_ == 3
    single = I2M2Classifier(cv=None, max_epochs=2, random_state=0).fit(X, y)
    assert single.n_folds_ == 1
    no_stopping = I2M2Classifier(early_stopping=False, max_epochs=2, random_state=0).fit(X, y)
    assert no_stopping.n_folds_ == 1 and no_stopping.temperature_ == 1.0


def test_too_many_folds_for_a_class_is_refused_before_training():
    X, y = make_independent(120, n_modalities=2)
    y = y.copy()
    y[:4] = 2  # a third class with 4 samples
    clf = I2M2Classifier(cv=5, max_epochs=2)
    with pytest.raises(ValueError, match="cv=5 folds need at least 5 samples of each class"):
        clf.fit(X, y)
    assert not hasattr(clf, "module_")
    # "auto" uses as many folds as the smallest class allows.
    assert I2M2Classifier(max_epochs=1, random_state=0).fit(X, y).n_folds_ == 4


def test_explicit_encoders_are_kept_on_small_data():
    X, y = make_independent(120, n_modalities=2)
    clf = I2M2Classifier(
        encoders={"m0": MLPEncoder(hidden_sizes=(8,))},
        fusion="lrtf",
        cv=None,
        max_epochs=1,
        random_state=0,
    ).fit(X, y)
    assert clf.encoders_["m0"].hidden_sizes == (8,)
    assert clf.encoders_["m1"].hidden_sizes == ()
    assert type(clf.fusion_).__name__ == "LowRankTensorFusion"


# ----------------------------------------------------------------------
# Full-batch L-BFGS


def test_small_cohorts_train_full_batch_with_lbfgs(small_fit):
    clf, _, y = small_fit
    assert clf.optimizer_ is torch.optim.LBFGS
    # The stage nets run torch's L-BFGS with the parameters as one flat tensor.
    assert all(
        net.optimizer is FlatLBFGS and isinstance(net.optimizer_, FlatLBFGS)
        for nets in clf.fold_nets_
        for net in nets
        if net is not None
    )
    train_rows = len(y) - len(clf.fold_nets_[0][0].train_split.keywords["valid_ds"])
    assert clf.batch_size_ == train_rows  # every training row in one batch
    assert clf.fusion_.dropout == 0.0  # a line search needs a deterministic loss
    # A classifier's patience with L-BFGS: one epoch.
    assert clf.n_iter_no_change_ == ClassesOutcome.full_batch_patience == 1
    pretrain, finetune = clf.fold_nets_[0]
    # One optimizer step (up to 5 L-BFGS iterations) per epoch.
    assert all(
        sum("train_loss" in batch for batch in row["batches"]) == 1 for row in pretrain.history
    )
    assert finetune.lr == 1.0  # the line search sets the step


def test_large_data_keeps_adamw():
    X, y = make_independent(SMALL_COHORT, n_modalities=2)
    clf = I2M2Classifier(max_epochs=1, finetune_epochs=0, random_state=0).fit(X, y)
    assert clf.optimizer_ is torch.optim.AdamW and clf.batch_size_ == 850 // 16  # mini-batches
    assert clf.n_iter_no_change_ == 10


def test_multilabel_outcomes_are_small_cohorts_up_to_their_own_size():
    """Multilabel fits keep the small-cohort defaults up to MULTILABEL_SMALL_COHORT samples."""
    assert MULTILABEL_SMALL_COHORT > SMALL_COHORT
    X, y = make_independent(SMALL_COHORT, n_modalities=2)
    Y = np.c_[y, 1 - y]
    labels = I2M2Classifier(max_epochs=1, finetune_epochs=0, random_state=0).fit(X, Y)
    assert labels.multilabel_ and labels.n_folds_ == 5
    assert labels.optimizer_ is torch.optim.LBFGS and labels.weight_decay_grid_ is not None
    # Multilabel fits keep the longer patience (one label may still learn).
    assert labels.n_iter_no_change_ == FULL_BATCH_PATIENCE == 3
    X, y = make_independent(MULTILABEL_SMALL_COHORT, n_modalities=2)
    Y = np.c_[y, 1 - y]
    labels = I2M2Classifier(max_epochs=1, finetune_epochs=0, random_state=0).fit(X, Y)
    assert labels.n_folds_ == 1 and labels.optimizer_ is torch.optim.AdamW


@pytest.mark.parametrize("solver_tol, atol", [(1e-10, 1e-4), (SOLVER_TOL, 1e-3)])
def test_a_linear_expert_is_the_penalised_logistic_regression(monkeypatch, solver_tol, atol):
    # A linear expert is solved as the convex problem it is: the mean loss plus
    # weight_decay / 2 * ||W||^2, i.e. LogisticRegression(C=1 / (n * weight_decay))
    # on the standardised features (3 classes: both use the full multinomial).
    # Solved to convergence it is that optimum; at the default tolerance
    # (scikit-learn's tol) it is close to it.
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    monkeypatch.setattr(linear_experts, "SOLVER_TOL", solver_tol)
    rng = np.random.RandomState(0)
    n, weight_decay = 150, 1e-2
    y = rng.randint(0, 3, n)
    x = (rng.randn(n, 5) * [1, 10, 100, 1, 1] + y[:, None] * [1, 5, 0, 0, 0.5]).astype(np.float32)
    clf = I2M2Classifier(
        dependencies="intra", early_stopping=False, weight_decay=weight_decay, random_state=0
    ).fit({"tab": x}, y)
    assert clf.optimizer_ is torch.optim.LBFGS
    reference = LogisticRegression(C=1 / (n * weight_decay), tol=1e-10, max_iter=10_000)
    scaled = StandardScaler().fit_transform(x.astype(np.float64))
    reference.fit(scaled, y)
    np.testing.assert_allclose(
        clf.predict_proba({"tab": x}), reference.predict_proba(scaled), atol=atol
    )
    # Solved before stage 1, which has nothing left to train.
    assert clf.weight_decay_grid_ == (weight_decay,)
    assert clf.expert_weight_decay_ == {"tab": weight_decay}
    assert len(clf.pretrain_net_.history) == 0


def test_an_explicit_optimizer_is_used_on_small_data():
    X, y = make_independent(120, n_modalities=2)
    clf = I2M2Classifier(optimizer=torch.optim.AdamW, max_epochs=3, random_state=0).fit(X, y)
    assert clf.optimizer_ is torch.optim.AdamW
    assert clf.batch_size_ == 64  # mini-batches (of 96 training rows)
    assert clf.fusion_.dropout == 0.1
