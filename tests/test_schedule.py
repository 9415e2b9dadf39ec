"""lr_schedule: the learning rate of large batches (LargeBatchLR)."""

import pickle

import numpy as np
import pytest
from conftest import make_independent, make_xor
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import LRScheduler

from sk_i2m2 import I2M2Classifier
from sk_i2m2.callbacks import LargeBatchLR
from sk_i2m2.training.schedule import (
    REFERENCE_BATCH_SIZE,
    WarmupFactor,
    lr_schedule_callbacks,
)

STAGES = ("pretrain", "finetune")


@pytest.fixture(scope="module")
def data():
    # 1200 rows: 1020 training rows after the 15 % validation split.
    return make_independent(1200, n_modalities=2)


def fit(X, y, **params):
    params = {"max_epochs": 4, "n_iter_no_change": 50, "random_state": 0, **params}
    return I2M2Classifier(**params).fit(X, y)


def nets(clf):
    return {"pretrain": clf.pretrain_net_, "finetune": clf.finetune_net_}


def batch_lrs(net):
    """The learning rate of every training batch, in order."""
    return [lr for epoch in net.history[:, "batches", :, "batch_lr"] for lr in epoch]


def optimizer_lr(net):
    return net.optimizer_.param_groups[0]["lr"]


def test_warmup_factor_rises_linearly_then_stays():
    factor = WarmupFactor(scale=4, warmup_steps=3)
    assert [factor(t) for t in range(6)] == [1, 2, 3, 4, 4, 4]
    assert WarmupFactor(scale=2, warmup_steps=0)(0) == 2
    assert pickle.loads(pickle.dumps(factor))(1) == 2


def test_learning_rate_per_step_in_both_stages(data):
    X, y = data
    # Batch 512 on 1020 rows: 2 steps per epoch, k = 2; 20 epochs -> a
    # warm-up of 2 epochs (a tenth of max_epochs) = 4 steps.
    clf = fit(X, y, batch_size=512, max_epochs=20, lr=1e-3)
    ramp = [1, 1.25, 1.5, 1.75] + [2] * 36
    for stage, base in [("pretrain", 1e-3), ("finetune", 1e-4)]:
        net = nets(clf)[stage]
        callback = dict(net.callbacks_)["large_batch_lr"]
        assert callback.scale_ == 2 and callback.warmup_steps_ == 4
        lrs = batch_lrs(net)
        assert len(lrs) == 2 * len(net.history)
        np.testing.assert_allclose(lrs, base * np.array(ramp[: len(lrs)]))
        assert net.lr == base  # the net keeps the unscaled rate; the scheduler scales it
        assert optimizer_lr(net) == pytest.approx(2 * base)


def test_warmup_is_five_epochs_at_most(data):
    X, y = data
    clf = fit(X, y, batch_size=512, max_epochs=100, finetune_epochs=1, n_iter_no_change=1)
    assert dict(clf.pretrain_net_.callbacks_)["large_batch_lr"].warmup_steps_ == 5 * 2
    # A single epoch still warms up over that epoch.
    assert dict(clf.finetune_net_.callbacks_)["large_batch_lr"].warmup_steps_ == 2


def test_batch_larger_than_the_data_scales_by_the_data(data):
    X, y = data
    clf = fit(X, y, batch_size=4096, max_epochs=2)
    callback = dict(clf.pretrain_net_.callbacks_)["large_batch_lr"]
    assert callback.scale_ == pytest.approx(1020 / REFERENCE_BATCH_SIZE)
    assert callback.warmup_steps_ == 1
    assert batch_lrs(clf.pretrain_net_) == pytest.approx([1e-3, 1e-3 * 1020 / 256])


def test_sqrt_scaling_in_callbacks(data):
    X, y = data
    clf = fit(
        X,
        y,
        batch_size=1020,
        max_epochs=4,
        lr_schedule="constant",
        callbacks=[LargeBatchLR(scaling="sqrt", warmup_epochs=2)],
    )
    callback = dict(clf.pretrain_net_.callbacks_)["LargeBatchLR"]
    assert callback.scale_ == pytest.approx(np.sqrt(1020 / 256))
    assert callback.warmup_steps_ == 1  # a tenth of 4 epochs, at least one
    np.testing.assert_allclose(
        batch_lrs(clf.pretrain_net_),
        1e-3 * np.sqrt(1020 / 256) * np.array([1 / np.sqrt(1020 / 256), 1, 1, 1]),
    )


def test_constant_schedule_keeps_the_learning_rate(data):
    X, y = data
    clf = fit(X, y, batch_size=512, lr_schedule="constant", lr=2e-3)
    for stage, base in [("pretrain", 2e-3), ("finetune", 2e-4)]:
        net = nets(clf)[stage]
        assert "large_batch_lr" not in dict(net.callbacks_)
        assert "batch_lr" not in net.history[-1]["batches"][0]
        assert optimizer_lr(net) == pytest.approx(base)


@pytest.mark.parametrize("batch_size", ["auto", 64, REFERENCE_BATCH_SIZE])
def test_batches_up_to_256_train_the_same_model(data, batch_size):
    X, y = data
    auto = fit(X, y, batch_size=batch_size)
    constant = fit(X, y, batch_size=batch_size, lr_schedule="constant")
    for net in nets(auto).values():
        assert "large_batch_lr" not in dict(net.callbacks_)
    np.testing.assert_array_equal(auto.predict_proba(X), constant.predict_proba(X))


def test_a_user_lr_scheduler_runs_alone(data):
    X, y = data
    clf = fit(
        X,
        y,
        batch_size=512,
        lr=1e-2,
        callbacks=[LRScheduler(policy="StepLR", step_size=1, gamma=0.5)],
    )
    for stage, base in [("pretrain", 1e-2), ("finetune", 1e-3)]:
        net = nets(clf)[stage]
        assert "large_batch_lr" not in dict(net.callbacks_)
        lrs = net.history[:, "event_lr"]
        np.testing.assert_allclose(lrs, [base * 0.5**k for k in range(len(lrs))])


def test_a_user_lr_scheduler_of_one_stage_leaves_the_other_scheduled(data):
    X, y = data
    scheduler = LRScheduler(policy="ExponentialLR", gamma=0.9)
    clf = fit(X, y, batch_size=512, callbacks={"finetune": [("decay", scheduler)]})
    assert "large_batch_lr" in dict(clf.pretrain_net_.callbacks_)
    assert "large_batch_lr" not in dict(clf.finetune_net_.callbacks_)


def test_lr_schedule_callbacks():
    assert lr_schedule_callbacks("constant", 1024, []) == []
    assert lr_schedule_callbacks("auto", REFERENCE_BATCH_SIZE, []) == []
    [(name, callback)] = lr_schedule_callbacks("auto", REFERENCE_BATCH_SIZE + 1, [])
    assert name == "large_batch_lr" and isinstance(callback, LargeBatchLR)
    assert lr_schedule_callbacks("auto", 1024, [("s", LRScheduler())]) == []


def test_invalid_lr_schedule_is_refused(data):
    X, y = data
    with pytest.raises(InvalidParameterError, match="lr_schedule"):
        I2M2Classifier(lr_schedule="linear").fit(X, y)


def test_fitted_model_with_the_schedule_pickles(data):
    X, y = data
    clf = fit(X, y, batch_size=512, max_epochs=2)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))


def test_large_batch_reaches_the_small_batch_accuracy():
    """XOR across modalities, 2000 training rows, 20 epochs: one full batch per step."""
    X, y = make_xor(3000)
    train, test = np.arange(2000), np.arange(2000, 3000)
    X_train = {m: v[train] for m, v in X.items()}
    X_test = {m: v[test] for m, v in X.items()}

    def accuracy(batch_size, lr_schedule):
        clf = I2M2Classifier(
            batch_size=batch_size, lr_schedule=lr_schedule, max_epochs=20, random_state=0
        ).fit(X_train, y[train])
        return clf.score(X_test, y[test])

    small = accuracy(128, "auto")
    assert small > 0.95
    # At the same epochs a batch of 2048 takes 16 times fewer steps: undertrained
    # at the constant rate, as accurate as the small batch with the schedule.
    assert accuracy(2048, "constant") < small - 0.1
    assert accuracy(2048, "auto") > small - 0.02
