"""Linear experts of a small cohort: solved for every fold and L2 coefficient, chosen by the folds."""

import numpy as np
import pytest
import torch
from conftest import make_independent
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from sk_i2m2 import I2M2Classifier
from sk_i2m2.training import linear_experts
from sk_i2m2.training.linear_experts import L2_GRID_FACTORS, SOLVER_TOL


@pytest.fixture(scope="module")
def weak_and_strong():
    # One informative view and one of pure noise, 120 rows.
    rng = np.random.RandomState(0)
    n = 120
    y = rng.randint(0, 2, n)
    strong = (rng.randn(n, 5) + 1.5 * y[:, None]).astype(np.float32)
    noise = rng.randn(n, 20).astype(np.float32)
    X = {"strong": strong, "noise": noise}
    return I2M2Classifier(random_state=0).fit(X, y), X, y


def test_each_linear_expert_chooses_its_l2_by_the_held_out_loss(weak_and_strong):
    clf, _, y = weak_and_strong
    n_train = len(y) - len(y) // clf.n_folds_
    assert clf.weight_decay_grid_ == pytest.approx([f / n_train for f in L2_GRID_FACTORS])
    assert sorted(clf.weight_decay_scores_) == ["noise", "strong"]
    for name, scores in clf.weight_decay_scores_.items():
        assert scores.shape == (len(L2_GRID_FACTORS),)
        chosen = clf.weight_decay_grid_[int(np.argmin(scores))]
        assert clf.expert_weight_decay_[name] == chosen
    # The noise view is best left near the prior: the strongest penalty.
    assert clf.expert_weight_decay_["noise"] == max(clf.weight_decay_grid_)
    # The inter expert is not linear: it trains in stage 1 with the default penalty.
    assert clf.expert_weight_decay_["inter"] == clf.weight_decay_
    assert clf.score(*weak_and_strong[1:]) > 0.8


@pytest.mark.parametrize("solver_tol, atol", [(1e-10, 1e-4), (SOLVER_TOL, 1e-3)])
def test_each_fold_expert_is_the_logistic_regression_of_its_rows(
    weak_and_strong, monkeypatch, solver_tol, atol
):
    # Fold k's copy of an expert, at the chosen coefficient, is scikit-learn's
    # LogisticRegression fitted on fold k's training rows (standardised with
    # their own statistics): the batched solve gives each fold its own model.
    # A two-class expert has one weight vector per class; at the optimum they
    # are opposite, so its penalty on their difference is half scikit-learn's
    # binomial one: C doubles. Solved to convergence it is that optimum; at
    # the default tolerance (scikit-learn's tol) it is close to it.
    _, X, y = weak_and_strong
    monkeypatch.setattr(linear_experts, "SOLVER_TOL", solver_tol)
    clf = I2M2Classifier(random_state=0).fit(X, y)
    folds = StratifiedKFold(clf.n_folds_, shuffle=True, random_state=clf.seed_).split(y, y)
    l2 = clf.expert_weight_decay_["strong"]
    for (train, _), (pretrain, _) in zip(folds, clf.fold_nets_):
        assert len(pretrain.train_split.keywords["valid_ds"]) == len(y) - len(train)
        expert = pretrain.module_.experts["strong"]
        scaler = expert.encoder.scaler
        rows = (X["strong"][train] - scaler.mean.numpy()) / scaler.scale.numpy()
        reference = LogisticRegression(C=2 / (len(train) * l2), tol=1e-10).fit(rows, y[train])
        with torch.no_grad():
            logits = expert.head(torch.as_tensor(rows, dtype=torch.float32))
        proba = torch.softmax(logits, 1).numpy()
        np.testing.assert_allclose(proba, reference.predict_proba(rows), atol=atol)


def test_an_explicit_weight_decay_is_not_searched():
    X, y = make_independent(100, n_modalities=2)
    clf = I2M2Classifier(weight_decay=0.05, max_epochs=3, random_state=0).fit(X, y)
    assert clf.weight_decay_grid_ == (0.05,)
    assert clf.expert_weight_decay_ == {"m0": 0.05, "m1": 0.05, "inter": 0.05}
    assert clf.weight_decay_scores_["m0"].shape == (1,)


def test_large_data_and_mini_batch_fits_train_linear_experts_in_stage_1():
    X, y = make_independent(120, n_modalities=2)
    adamw = I2M2Classifier(optimizer=torch.optim.AdamW, max_epochs=2, random_state=0).fit(X, y)
    assert adamw.weight_decay_grid_ is None and adamw.weight_decay_scores_ is None
    assert set(adamw.expert_weight_decay_.values()) == {adamw.weight_decay_}


def test_missing_rows_and_sample_weights_reach_the_solve():
    X, y = make_independent(150, n_modalities=2)
    X = {m: v.copy() for m, v in X.items()}
    X["m1"][:30] = np.nan  # 30 rows without m1
    weights = np.linspace(0.5, 2.0, len(y))
    clf = I2M2Classifier(random_state=0).fit(X, y, sample_weight=weights)
    assert np.isfinite(clf.weight_decay_scores_["m1"]).all()
    assert clf.predict_proba(X).shape == (len(y), 2)
    assert clf.score(X, y) > 0.6


def test_the_choice_is_saved_and_loaded(weak_and_strong, tmp_path):
    clf, X, _ = weak_and_strong
    clf.save(tmp_path)
    loaded = I2M2Classifier.load(tmp_path)
    assert loaded.expert_weight_decay_ == clf.expert_weight_decay_
    assert tuple(loaded.weight_decay_grid_) == pytest.approx(clf.weight_decay_grid_)
    for name, scores in clf.weight_decay_scores_.items():
        np.testing.assert_allclose(loaded.weight_decay_scores_[name], scores)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_features_too_many_for_memory_train_in_stage_1(monkeypatch):
    from sk_i2m2.training import linear_experts

    X, y = make_independent(100, n_modalities=2)
    monkeypatch.setattr(linear_experts, "MAX_SOLVE_ENTRIES", 5 * 100 * 10 - 1)
    clf = I2M2Classifier(max_epochs=3, random_state=0).fit(X, y)
    assert clf.weight_decay_grid_ is None and clf.weight_decay_scores_ is None
    checkpoint = dict(clf.fold_nets_[0][0].callbacks_)["expert_checkpoint"]
    assert checkpoint.best_epoch_["m0"] > 0  # trained in stage 1
