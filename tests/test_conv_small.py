"""Small cohorts with mini-batch (conv) experts: batches of 64 at a linearly scaled rate."""

import numpy as np
import pytest
import torch
from skorch.callbacks import LRScheduler

from sk_i2m2 import I2M2Classifier
from sk_i2m2._sizing import (
    FEW_TRAINING_ROWS,
    SMALL_COHORT_BATCH_SIZE,
    auto_batch_size,
    auto_lr_schedule,
)
from sk_i2m2.training.schedule import lr_schedule_callbacks

ADAMW, LBFGS = torch.optim.AdamW, torch.optim.LBFGS
AUTO = {"lr_schedule": "auto", "batch_size": "auto"}


@pytest.mark.parametrize(
    "n_train, optimizer, expected",
    [
        (168, ADAMW, 64),  # digits-300's folds
        (84, ADAMW, 64),  # digits-150's folds
        (40, ADAMW, 40),  # every row when fewer than 64
        (FEW_TRAINING_ROWS - 1, ADAMW, 64),
        (FEW_TRAINING_ROWS, ADAMW, 16),  # n_train // 16 from here on, as before
        (850, ADAMW, 850 // 16),
        (100_000, ADAMW, 256),
        (168, LBFGS, 168),  # full batch
    ],
)
def test_auto_batch_size(n_train, optimizer, expected):
    assert auto_batch_size(n_train, optimizer) == expected


@pytest.mark.parametrize(
    "params, batch_size, n_train, optimizer, expected",
    [
        (AUTO, 64, 168, ADAMW, "small_cohort"),
        (AUTO, 40, 40, ADAMW, "small_cohort"),
        ({**AUTO, "batch_size": 64}, 64, 168, ADAMW, "auto"),  # an explicit batch: as given
        ({**AUTO, "lr_schedule": "constant"}, 64, 168, ADAMW, "constant"),
        (AUTO, 16, FEW_TRAINING_ROWS, ADAMW, "auto"),  # not a small-cohort batch
        (AUTO, 168, 168, LBFGS, "auto"),  # full batch: the line search sets the step
        (AUTO, 168, 168, ADAMW, "auto"),  # an outcome's own batch (Cox: whole risk sets)
    ],
)
def test_auto_lr_schedule(params, batch_size, n_train, optimizer, expected):
    assert auto_lr_schedule(params, batch_size, n_train, optimizer) == expected


def test_the_small_cohort_schedule_scales_from_16_without_warm_up():
    ((name, callback),) = lr_schedule_callbacks("small_cohort", SMALL_COHORT_BATCH_SIZE, [])
    assert name == "small_cohort_lr"
    assert callback.reference_batch_size == 16 and callback.warmup_epochs == 0
    # A user scheduler owns the rate, from the unscaled lr.
    user = [LRScheduler(policy="StepLR", step_size=1)]
    assert lr_schedule_callbacks("small_cohort", SMALL_COHORT_BATCH_SIZE, user) == []


def _digits(n):
    from sklearn.datasets import load_digits

    digits = load_digits()
    image = (digits.images[:n, None] / 16).astype(np.float32)
    table = np.concatenate([image.sum(axis=2)[:, 0], image.sum(axis=3)[:, 0]], axis=1)
    return {"image": image, "table": table}, digits.target[:n]


@pytest.fixture(scope="module")
def small_image_fit():
    # 120 rows: 96 training rows in each of the 5 cross-fitted folds.
    X, y = _digits(120)
    clf = I2M2Classifier(max_epochs=3, random_state=0).fit(X, y)
    return clf, X, y


def test_a_small_image_fit_takes_batches_of_64_at_four_times_the_rate(small_image_fit):
    clf, _, _ = small_image_fit
    assert clf.optimizer_ is ADAMW and clf.batch_size_ == 64
    for pretrain, finetune in clf.fold_nets_:
        for net, lr in ((pretrain, clf.lr), (finetune, clf.lr / 10)):
            callback = dict(net.callbacks_)["small_cohort_lr"]
            assert callback.scale_ == 4 and callback.warmup_steps_ == 0
            assert net.optimizer_.param_groups[0]["lr"] == pytest.approx(4 * lr)
            lrs = [lr for epoch in net.history[:, "batches", :, "batch_lr"] for lr in epoch]
            assert lrs == pytest.approx([4 * lr] * len(lrs))  # from the first step


def test_the_schedule_is_the_measured_constant_rate(small_image_fit):
    # What benchmarks/small_conv_regimes.py measured: batch_size=64, lr=4e-3.
    clf, X, y = small_image_fit
    explicit = I2M2Classifier(max_epochs=3, batch_size=64, lr=4e-3, random_state=0).fit(X, y)
    assert "small_cohort_lr" not in dict(explicit.fold_nets_[0][0].callbacks_)
    np.testing.assert_allclose(clf.predict_proba(X), explicit.predict_proba(X), atol=1e-5)


def test_an_explicit_batch_of_16_trains_as_before():
    X, y = _digits(60)
    clf = I2M2Classifier(max_epochs=1, finetune_epochs=0, batch_size=16, random_state=0)
    clf.fit(X, y)
    net = clf.fold_nets_[0][0]
    assert "small_cohort_lr" not in dict(net.callbacks_)
    assert net.optimizer_.param_groups[0]["lr"] == clf.lr
