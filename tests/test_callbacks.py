"""Stock skorch callbacks in each training stage, with dict and ModalityDict inputs."""

import io

import numpy as np
import pytest
import torch
from conftest import make_independent
from sklearn.metrics import accuracy_score, log_loss
from skorch.callbacks import (
    Callback,
    Checkpoint,
    EarlyStopping,
    EpochScoring,
    GradientNormClipping,
    LoadInitState,
    LRScheduler,
    ProgressBar,
    TrainEndCheckpoint,
)

from sk_i2m2 import I2M2Classifier, ModalityDict
from sk_i2m2.callbacks import StageProgressBar
from sk_i2m2.nn.product import product_proba
from sk_i2m2.training.net import StageNet

STAGES = ("pretrain", "finetune")


@pytest.fixture
def data():
    X, y = make_independent(240, n_modalities=2)
    return ModalityDict(X), y


def fit(X, y, callbacks, **params):
    # One validation split (cv=None), so each stage has one net to inspect.
    params = {"max_epochs": 4, "random_state": 0, "n_iter_no_change": 50, "cv": None, **params}
    return I2M2Classifier(callbacks=callbacks, **params).fit(X, y)


def nets(clf):
    return {"pretrain": clf.pretrain_net_, "finetune": clf.finetune_net_}


class ScoreByHand(Callback):
    """Records, after the scoring callbacks, sklearn's metrics on the validation rows."""

    def __init__(self, records):
        self.records = records

    def on_epoch_end(self, net, dataset_valid=None, **kwargs):
        y_valid = dataset_valid.y.numpy()
        proba = net.predict_proba(dataset_valid)
        self.records.append(
            (accuracy_score(y_valid, proba.argmax(1)), -log_loss(y_valid, proba, labels=[0, 1]))
        )


@pytest.mark.parametrize("as_modality_dict", [True, False])
def test_epoch_scoring_equals_sklearn_metrics_on_validation_rows(data, as_modality_dict):
    X, y = data
    X = X if as_modality_dict else dict(X)
    records = {stage: [] for stage in STAGES}
    callbacks = {
        stage: [
            EpochScoring("accuracy", lower_is_better=False, name="acc"),
            EpochScoring("neg_log_loss", name="nll", use_caching=False),
            ScoreByHand(records[stage]),
        ]
        for stage in STAGES
    }
    clf = fit(X, y, callbacks, calibration=None)
    for stage, net in nets(clf).items():
        expected = np.array(records[stage])
        assert len(expected) == len(net.history)
        np.testing.assert_allclose(net.history[:, "acc"], expected[:, 0])
        np.testing.assert_allclose(net.history[:, "nll"], expected[:, 1], rtol=1e-4)
    # The stage net's predictions are those of the product of its experts.
    net = clf.finetune_net_
    assert net.predict_nonlinearity is product_proba
    np.testing.assert_allclose(net.predict_proba(dict(X)), clf.predict_proba(X), atol=1e-5)
    assert list(net.classes_) == [0, 1]


def test_epoch_scoring_on_train(data):
    X, y = data
    clf = fit(
        X,
        y,
        [
            EpochScoring(
                "balanced_accuracy", on_train=True, name="train_bacc", lower_is_better=False
            )
        ],
    )
    for net in nets(clf).values():
        scores = net.history[:, "train_bacc"]
        assert len(scores) == len(net.history)
        assert all(0.0 <= s <= 1.0 for s in scores)


def test_callbacks_are_fresh_copies_per_stage(data):
    X, y = data
    scoring = EpochScoring("accuracy", name="acc", lower_is_better=False)
    clf = fit(X, y, [scoring, ("named", EpochScoring("roc_auc", lower_is_better=False))])
    pre = dict(clf.pretrain_net_.callbacks_)
    fine = dict(clf.finetune_net_.callbacks_)
    assert pre["EpochScoring"] is not fine["EpochScoring"]
    assert pre["named"] is not fine["named"]
    assert scoring is not pre["EpochScoring"] and scoring is not fine["EpochScoring"]
    assert not hasattr(scoring, "best_score_")  # the user's instance stays untouched


def test_callbacks_dict_targets_one_stage(data):
    X, y = data
    clf = fit(X, y, {"pretrain": [EpochScoring("accuracy", name="acc")]})
    assert "acc" in clf.pretrain_net_.history[-1]
    assert "acc" not in clf.finetune_net_.history[-1]


def test_callbacks_are_validated_before_training(data):
    X, y = data
    with pytest.raises(ValueError, match="callbacks has stage 'stage3'"):
        fit(X, y, {"stage3": []})
    with pytest.raises(TypeError, match="skorch callbacks"):
        fit(X, y, ["not a callback"])


class RecordingLogger(Callback):
    """A logger in the style of TensorBoard/WandbLogger: records what it is called with."""

    def __init__(self, calls):
        self.calls = calls

    def on_train_begin(self, net, **kwargs):
        self.calls.append(("train_begin", id(net)))

    def on_batch_end(self, net, batch=None, training=None, loss=None, **kwargs):
        self.calls.append(("batch_end", training, float(loss.detach())))

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        self.calls.append(
            (
                "epoch_end",
                row["epoch"],
                row["train_loss"],
                row["valid_loss"],
                [b["train_loss"] for b in row["batches"] if "train_loss" in b],
            )
        )

    def on_train_end(self, net, **kwargs):
        self.calls.append(("train_end", id(net)))


def test_logger_receives_every_event_with_plain_float_losses(data):
    X, y = data
    calls = []
    clf = fit(X, y, [RecordingLogger(calls)])
    starts = [c for c in calls if c[0] == "train_begin"]
    assert [c[1] for c in starts] == [id(clf.pretrain_net_), id(clf.finetune_net_)]
    epochs = [c for c in calls if c[0] == "epoch_end"]
    assert len(epochs) == len(clf.pretrain_net_.history) + len(clf.finetune_net_.history)
    for _, _, train_loss, valid_loss, batch_losses in epochs:
        assert isinstance(train_loss, float) and np.isfinite(valid_loss)
        assert batch_losses and all(type(b) is float for b in batch_losses)
    assert any(c[0] == "batch_end" and c[1] is True for c in calls)


def test_deferred_loss_sync_gives_the_same_history(data, monkeypatch):
    """The device-side batch losses (the CUDA default) record the floats skorch would."""
    X, y = data
    plain = fit(X, y, None)
    monkeypatch.setattr(StageNet, "_defers_loss_sync", lambda self: True)
    calls = []
    deferred = fit(X, y, [RecordingLogger(calls)])
    for stage in STAGES:
        a, b = nets(plain)[stage].history, nets(deferred)[stage].history
        for key in ("train_loss", "valid_loss"):
            np.testing.assert_allclose(a[:, key], b[:, key], rtol=1e-6)
        losses = b[:, "batches", :, "train_loss"]
        assert all(type(v) is float for epoch in losses for v in epoch)
    # Callbacks still got a tensor as the step's loss.
    assert any(c[0] == "batch_end" for c in calls)


def test_progress_bar_advances_in_both_stages(data, capsys):
    X, y = data
    # Mini-batches of 16 (on 240 rows "auto" would train full-batch with L-BFGS).
    clf = fit(X, y, [ProgressBar()], optimizer=torch.optim.AdamW, batch_size=16)
    assert "0/14" in capsys.readouterr().err
    # 240 rows, 15 % validation: 204 training rows in batches of 16 (one
    # final singleton dropped) and one validation batch of 36: 13 + 1 steps.
    for net in nets(clf).values():
        bar = dict(net.callbacks_)["ProgressBar"].pbar_
        assert bar.n == bar.total == 14
        assert "valid_loss=" in bar.postfix  # the last batch is a validation batch


def test_stage_progress_bar_shows_epochs_losses_and_best_epoch(data):
    X, y = data
    stream = io.StringIO()
    clf = fit(X, y, [StageProgressBar(file=stream)])
    text = stream.getvalue()
    n_pre, n_fine = len(clf.pretrain_net_.history), len(clf.finetune_net_.history)
    assert f"{n_pre}/4" in text and f"{n_fine}/4" in text
    assert "train_loss=" in text and "valid_loss=" in text and "best_epoch=" in text


def test_default_progress_display_is_silent_when_not_interactive(data, capsys):
    X, y = data
    fit(X, y, None, verbose=1)
    out, err = capsys.readouterr()
    assert "[I2M2Classifier] pretrain:" in out and "[I2M2Classifier] finetune:" in out
    assert "epoch/s" not in err and "it/s" not in err


def test_default_progress_bar_in_a_terminal(data, monkeypatch):
    X, y = data
    stream = io.StringIO()
    monkeypatch.setattr("sk_i2m2.training.stages.interactive_output", lambda: True)
    monkeypatch.setattr(
        StageProgressBar,
        "__init__",
        lambda self, stage="training", file=None: (
            (setattr(self, "stage", stage), setattr(self, "file", stream)) and None
        ),
    )
    clf = fit(X, y, None, verbose=1)
    assert "pretrain" in stream.getvalue() and "finetune" in stream.getvalue()
    assert "progress" in dict(clf.finetune_net_.callbacks_)
    assert "progress" not in dict(fit(X, y, None, verbose=0).finetune_net_.callbacks_)


def test_checkpoint_and_load_init_state_resume_an_interrupted_fit(data, tmp_path):
    X, y = data

    class InterruptFinetune(Callback):
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == 2:
                raise KeyboardInterrupt

    checkpoint = Checkpoint(dirname=str(tmp_path), monitor=None)
    params = dict(max_epochs=3, finetune_epochs=5, early_stopping=False)
    with pytest.warns(UserWarning, match="interrupted in the finetune stage"):
        first = fit(
            X,
            y,
            {"pretrain": [checkpoint], "finetune": [checkpoint, InterruptFinetune()]},
            **params,
        )
    assert first.interrupted_stage_ == "finetune"
    files = {p.name for p in tmp_path.iterdir()}
    assert {"pretrain_params.pt", "finetune_params.pt", "finetune_history.json"} <= files

    resumed = fit(X, y, [checkpoint, LoadInitState(checkpoint)], **params)
    assert resumed.interrupted_stage_ is None
    # Stage 2 picked up its 2 checkpointed epochs and ran its 5 more.
    assert len(resumed.finetune_net_.history) == 2 + 5
    assert resumed.finetune_net_.history[1, "train_loss"] == pytest.approx(
        first.finetune_net_.history[1, "train_loss"]
    )
    assert len(resumed.pretrain_net_.history) == 3 + 3


def test_train_end_checkpoint_per_stage(data, tmp_path):
    X, y = data
    fit(X, y, [TrainEndCheckpoint(dirname=str(tmp_path))])
    files = {p.name for p in tmp_path.iterdir()}
    assert {"pretrain_train_end_params.pt", "finetune_train_end_params.pt"} <= files


def test_lr_scheduler_changes_the_learning_rate_per_stage(data):
    X, y = data
    clf = fit(
        X,
        y,
        [LRScheduler(policy="StepLR", step_size=1, gamma=0.5)],
        lr=1e-2,
        optimizer=torch.optim.AdamW,  # a learning rate to schedule, unlike L-BFGS's line search
    )
    pre = clf.pretrain_net_.history[:, "event_lr"]
    fine = clf.finetune_net_.history[:, "event_lr"]
    np.testing.assert_allclose(pre, [1e-2 * 0.5**k for k in range(len(pre))])
    np.testing.assert_allclose(fine, [1e-3 * 0.5**k for k in range(len(fine))])


def test_user_early_stopping_ends_a_stage(data):
    X, y = data
    clf = fit(
        X,
        y,
        {
            "finetune": [
                EarlyStopping(
                    monitor="train_loss", patience=1, threshold=10.0, threshold_mode="abs"
                )
            ]
        },
        max_epochs=10,
    )
    assert len(clf.finetune_net_.history) == 2
    assert clf.interrupted_stage_ is None
    assert len(clf.pretrain_net_.history) > 2


class GradNorms(Callback):
    def __init__(self, norms):
        self.norms = norms

    def on_grad_computed(self, net, named_parameters, **kwargs):
        grads = [p.grad.norm() for _, p in named_parameters if p.grad is not None]
        self.norms.append(float(torch.stack(grads).norm()))


def test_gradient_norm_clipping_bounds_the_gradient(data):
    X, y = data
    norms = []
    fit(X, y, [GradientNormClipping(gradient_clip_value=0.05), GradNorms(norms)])
    assert norms and max(norms) <= 0.05 * (1 + 1e-4)
    unclipped = []
    fit(X, y, [GradNorms(unclipped)])
    assert max(unclipped) > 0.05
