"""warm_start: fits of other ``dependencies`` keep the stage-1 experts already trained."""

import numpy as np
import pytest
import torch
from conftest import make_independent, make_xor

from sk_i2m2 import I2M2Classifier, I2M2Regressor
from sk_i2m2.datasets import make_multimodal_regression
from sk_i2m2.encoders import MLPEncoder

SETTINGS = dict(cv=None, max_epochs=8, n_iter_no_change=3, warm_start=True)


def _states(experts):
    return {name: {k: v.clone() for k, v in e.state_dict().items()} for name, e in experts.items()}


def _same_weights(expert, state):
    return all(torch.equal(v, state[k]) for k, v in expert.state_dict().items())


def _checkpoint(clf):
    return dict(clf.pretrain_net_.callbacks_)["expert_checkpoint"]


@pytest.fixture(scope="module")
def data():
    X, y = make_independent(400, n_modalities=2)
    return X, y


def test_baselines_after_i2m2_reuse_its_experts(data):
    X, y = data
    clf = I2M2Classifier(random_state=None, **SETTINGS).fit(X, y)
    seed, trained = clf.seed_, _states(clf.pretrain_net_.module_.experts)
    i2m2_inter = clf.expert_proba(X, stage="pretrain")["inter"]

    clf.set_params(dependencies="intra").fit(X, y)
    # Stage 1 ran no epoch: its experts are the I2M2 fit's; stage 2 fine-tuned them.
    assert len(clf.pretrain_net_.history) == 0
    assert clf.expert_names_ == ["m0", "m1"] and clf.seed_ == seed
    for name, expert in clf.pretrain_net_.module_.experts.items():
        assert _same_weights(expert, trained[name])
    assert len(clf.finetune_net_.history) > 0

    # The inter expert was not in the intra model, and it is still kept.
    clf.set_params(dependencies="inter").fit(X, y)
    assert clf.finetune_net_ is None and len(clf.pretrain_net_.history) == 0
    assert _same_weights(clf.module_.experts["inter"], trained["inter"])
    np.testing.assert_allclose(
        clf.expert_proba(X, stage="pretrain")["inter"], i2m2_inter, rtol=1e-5, atol=1e-6
    )
    assert set(clf.pretrained_experts_[0]) == {"m0", "m1", "inter"}


def test_i2m2_after_intra_trains_only_the_inter_expert(capsys):
    X, y = make_xor(600)
    clf = I2M2Classifier("intra", random_state=0, **SETTINGS).fit(X, y)
    trained = _states(clf.pretrain_net_.module_.experts)
    clf.set_params(dependencies="both", max_epochs=40, verbose=1).fit(X, y)
    assert "trained before this stage: a, b" in capsys.readouterr().out
    checkpoint = _checkpoint(clf)
    assert checkpoint.stopped_epoch_["a"] == checkpoint.stopped_epoch_["b"] == 0
    history = clf.pretrain_net_.history
    assert len(history) > 0
    assert all("valid_loss_inter" in row and "valid_loss_a" not in row for row in history)
    for name in ("a", "b"):
        assert _same_weights(clf.pretrain_net_.module_.experts[name], trained[name])
    assert clf.score(X, y) > 0.8  # XOR: only the inter expert can learn it


def test_changed_encoder_retrains_its_expert_and_the_inter_expert(data):
    X, y = data
    clf = I2M2Classifier(random_state=0, **SETTINGS).fit(X, y)
    trained = _states(clf.pretrain_net_.module_.experts)
    clf.set_params(encoders={"m1": MLPEncoder(hidden_sizes=(8,))}).fit(X, y)
    checkpoint = _checkpoint(clf)
    assert set(checkpoint.stopped_epoch_) >= {"m0"} and checkpoint.stopped_epoch_["m0"] == 0
    assert checkpoint.best_epoch_["m1"] > 0 and checkpoint.best_epoch_["inter"] > 0
    experts = clf.pretrain_net_.module_.experts
    assert _same_weights(experts["m0"], trained["m0"])
    assert set(experts["m1"].state_dict()) != set(trained["m1"])  # the new encoder's


def test_cross_fitted_folds_keep_their_own_experts(data):
    X, y = data
    clf = I2M2Classifier(random_state=0, **{**SETTINGS, "cv": 3}).fit(X, y)
    trained = [_states(pretrain.module_.experts) for pretrain, _ in clf.fold_nets_]
    clf.set_params(dependencies="intra").fit(X, y)
    assert clf.n_folds_ == 3
    for (pretrain, _), states in zip(clf.fold_nets_, trained):
        assert len(pretrain.history) == 0
        for name, expert in pretrain.module_.experts.items():
            assert _same_weights(expert, states[name])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda X, y: ({**X, "m1": X["m1"][:, :3]}, y), "modality shapes"),
        (lambda X, y: (X, y + 1), "classes_"),
    ],
)
def test_other_data_is_refused_and_the_fitted_model_kept(data, change, message):
    X, y = data
    clf = I2M2Classifier(random_state=0, **SETTINGS).fit(X, y)
    before = clf.predict_proba(X)
    with pytest.raises(ValueError, match=f"warm_start=True keeps.*{message}"):
        clf.fit(*change(X, y))
    np.testing.assert_array_equal(clf.predict_proba(X), before)
    # Without warm_start, the same call trains anew and forgets the kept experts.
    clf.set_params(warm_start=False).fit(*change(X, y))
    assert not hasattr(clf, "pretrained_experts_")


def test_regressor_baselines_reuse_its_experts():
    X, y = make_multimodal_regression(300, random_state=0)
    reg = I2M2Regressor(random_state=0, **SETTINGS).fit(X, y)
    trained = _states(reg.pretrain_net_.module_.experts)
    reg.set_params(dependencies="inter").fit(X, y)
    assert len(reg.pretrain_net_.history) == 0
    assert _same_weights(reg.module_.experts["inter"], trained["inter"])
    assert reg.score(X, y) > 0.2
