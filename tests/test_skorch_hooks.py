"""The stage nets' use of skorch's extension points: batch losses, stopping callbacks."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import make_independent, requires_cuda
from skorch.callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    EpochScoring,
    LRScheduler,
    PrintLog,
    ProgressBar,
)
from skorch.history import History

from sk_i2m2 import I2M2Classifier
from sk_i2m2.callbacks import Converged, ExpertCheckpoint, LargeBatchLR
from sk_i2m2.training.callbacks import stopped_by_callback
from sk_i2m2.training.net import StageNet, _reads_batch_losses

STAGES = ("pretrain", "finetune")


@pytest.fixture(scope="module")
def data():
    return make_independent(240, n_modalities=2)


def fit(X, y, callbacks=None, **params):
    # Mini-batches (on 240 rows "auto" would train full-batch with L-BFGS),
    # one validation split, so each stage has one net to inspect.
    params = {
        "max_epochs": 3,
        "random_state": 0,
        "n_iter_no_change": 50,
        "cv": None,
        "optimizer": torch.optim.AdamW,
        **params,
    }
    return I2M2Classifier(callbacks=callbacks, **params).fit(X, y)


def nets(clf):
    return {"pretrain": clf.pretrain_net_, "finetune": clf.finetune_net_}


def assert_epoch_losses_are_batch_means(history):
    for row in history:
        for prefix in ("train", "valid"):
            batches = [b for b in row["batches"] if f"{prefix}_loss" in b]
            assert len(batches) == row[f"{prefix}_batch_count"] > 0
            losses = [b[f"{prefix}_loss"] for b in batches]
            sizes = [b[f"{prefix}_batch_size"] for b in batches]
            assert all(type(loss) is float for loss in losses)
            assert isinstance(row[f"{prefix}_loss"], float)  # skorch's is a np.float64
            # skorch's epoch loss: the batch losses weighted by batch size.
            assert row[f"{prefix}_loss"] == pytest.approx(np.average(losses, weights=sizes))


class TypeRecorder(Callback):
    """Records the types of the history's epoch values as every epoch ends."""

    def __init__(self, records):
        self.records = records

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        self.records.append({key: type(value) for key, value in row.items() if key != "batches"})
        self.records.append(
            {key: type(value) for batch in row["batches"] for key, value in batch.items()}
        )


def deferred(monkeypatch):
    # The CUDA default, on the CPU.
    monkeypatch.setattr(StageNet, "_defers_loss_sync", lambda self: True)


def test_epoch_losses_are_float_means_of_the_batch_losses(data):
    X, y = data
    for net in nets(fit(X, y)).values():
        assert_epoch_losses_are_batch_means(net.history)


def test_deferred_batch_losses_give_the_history_of_the_cpu_loop(data, monkeypatch):
    X, y = data
    plain = fit(X, y)
    deferred(monkeypatch)
    kept = fit(X, y)
    for stage in STAGES:
        a, b = nets(plain)[stage].history, nets(kept)[stage].history
        assert_epoch_losses_are_batch_means(b)
        for key in ("train_loss", "valid_loss"):
            assert a[:, key] == b[:, key]
        assert a[:, "batches"] == b[:, "batches"]
    # The trained model does not change.
    np.testing.assert_array_equal(plain.predict_proba(X), kept.predict_proba(X))


def test_deferred_batch_losses_take_no_item_per_batch(data, monkeypatch):
    X, y = data
    item = torch.Tensor.item
    calls = []

    def counting_item(self):
        calls.append(1)
        return item(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    counts = {}
    for defer in (False, True):
        if defer:
            deferred(monkeypatch)
        calls.clear()
        clf = fit(X, y, batch_size=16)
        counts[defer] = len(calls)
    n_batches = sum(
        row["train_batch_count"] + row["valid_batch_count"]
        for net in nets(clf).values()
        for row in net.history
    )
    assert counts[False] - counts[True] == n_batches


def test_stock_callbacks_see_floats_with_deferred_losses(data, monkeypatch, tmp_path):
    X, y = data
    deferred(monkeypatch)
    records = []
    callbacks = [
        EpochScoring("accuracy", name="valid_acc", lower_is_better=False),
        EpochScoring("accuracy", name="train_acc", on_train=True, lower_is_better=False),
        PrintLog(sink=lambda *args, **kwargs: None),
        Checkpoint(dirname=str(tmp_path), monitor="valid_loss_best"),
        EarlyStopping(patience=50),
        LRScheduler(policy="StepLR", step_size=1, gamma=0.9),
        TypeRecorder(records),
    ]
    clf = fit(X, y, callbacks)
    assert len(records) == 2 * sum(len(net.history) for net in nets(clf).values())
    for types in records:
        for key, kind in types.items():
            if key.endswith(("_loss", "_acc")):
                assert issubclass(kind, float), key
    for net in nets(clf).values():
        assert_epoch_losses_are_batch_means(net.history)


def test_callbacks_that_read_batch_losses_keep_the_per_batch_item(data):
    X, y = data
    clf = fit(X, y, [ProgressBar()], max_epochs=1)
    net = clf.pretrain_net_
    plateau = LRScheduler(policy=torch.optim.lr_scheduler.ReduceLROnPlateau, step_every="batch")
    plateau.initialize().on_train_begin(net)
    per_epoch_plateau = LRScheduler(policy=torch.optim.lr_scheduler.ReduceLROnPlateau)
    per_epoch_plateau.initialize().on_train_begin(net)

    class BatchLogger(Callback):
        def on_batch_end(self, net, **kwargs):
            pass

    readers = [ProgressBar(), plateau, BatchLogger()]
    others = [
        PrintLog(),
        EpochScoring("accuracy"),
        ExpertCheckpoint(),
        Converged(),
        LargeBatchLR(),
        per_epoch_plateau,
        EarlyStopping(),
    ]
    assert all(_reads_batch_losses(callback) for callback in readers)
    assert not any(_reads_batch_losses(callback) for callback in others)
    # On the CPU skorch's loop runs: a progress bar shows every batch's loss.
    assert not net._defers_loss_sync()
    assert "valid_loss=" in dict(net.callbacks_)["ProgressBar"].pbar_.postfix


# --------------------------------------------------------------------------
# Stopping callbacks and a user's Ctrl-C


class CtrlC(Callback):
    """A user's Ctrl-C in the middle of epoch ``epoch`` of ``stage``."""

    def __init__(self, stage, epoch):
        self.stage = stage
        self.epoch = epoch

    def on_batch_end(self, net, training=False, **kwargs):
        stage = "pretrain" if "expert_checkpoint" in dict(net.callbacks_) else "finetune"
        if training and stage == self.stage and len(net.history) == self.epoch:
            raise KeyboardInterrupt


class StopAfter(Callback):
    """A user's stopping callback, which says so with ``stopped_early_``."""

    def __init__(self, epochs):
        self.epochs = epochs

    def on_train_begin(self, net, **kwargs):
        self.stopped_early_ = False

    def on_epoch_end(self, net, **kwargs):
        if len(net.history) == self.epochs:
            self.stopped_early_ = True
            raise KeyboardInterrupt


@pytest.mark.parametrize("stage", STAGES)
def test_ctrl_c_mid_stage_sets_interrupted_stage(data, stage):
    X, y = data
    with pytest.warns(UserWarning, match=f"interrupted in the {stage} stage"):
        clf = fit(X, y, [CtrlC(stage, 2)])
    assert clf.interrupted_stage_ == stage
    assert not stopped_by_callback(nets(clf)[stage])
    assert np.isfinite(clf.predict_proba(X)).all()


@pytest.mark.parametrize(
    "callbacks, params",
    [
        ([EarlyStopping(monitor="train_loss", patience=1, threshold=10.0)], {}),
        ([StopAfter(2)], {}),
        (None, {"n_iter_no_change": 1, "max_epochs": 40, "lr": 0.05}),  # expert patience
    ],
    ids=["skorch EarlyStopping", "user stopped_early_", "expert patience"],
)
def test_stopping_callbacks_are_not_interrupts(data, callbacks, params):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf = fit(X, y, callbacks, **params)
    assert clf.interrupted_stage_ is None and clf.finetune_net_ is not None
    pretrain = clf.pretrain_net_
    assert len(pretrain.history) < pretrain.max_epochs
    assert stopped_by_callback(pretrain)


def test_converged_flag_is_reset_when_a_net_fits_again():
    net = SimpleNamespace(history=History(), callbacks_=[])
    converged = Converged().initialize()
    net.callbacks_.append(("converged", converged))
    for loss in (0.5, 0.5):
        net.history.new_epoch()
        net.history.record("train_loss", loss)
    with pytest.raises(KeyboardInterrupt):
        converged.on_epoch_end(net)
    assert converged.stopped_early_ and stopped_by_callback(net)
    converged.on_train_begin(net)  # the next fit: a Ctrl-C is the user's again
    assert not stopped_by_callback(net)


# --------------------------------------------------------------------------
# CUDA


@requires_cuda
def test_cuda_batch_losses_stay_on_the_device_until_the_pass_ends(data, monkeypatch):
    X, y = data
    syncs = {}
    for defer in (True, False):
        if not defer:
            monkeypatch.setattr(StageNet, "_defers_loss_sync", lambda self: False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                clf = fit(X, y, device="cuda", batch_size=16)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs[defer] = sum("synchronizing" in str(w.message) for w in caught)
        for net in nets(clf).values():
            assert_epoch_losses_are_batch_means(net.history)
        if defer:
            assert clf.pretrain_net_._defers_loss_sync()
    n_batches = sum(
        row["train_batch_count"] + row["valid_batch_count"]
        for net in nets(clf).values()
        for row in net.history
    )
    assert syncs[False] - syncs[True] >= n_batches
