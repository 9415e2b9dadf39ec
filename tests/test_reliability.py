"""Reproducible, interruptible training that survives awkward data."""

import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score
from skorch.callbacks import Callback, EarlyStopping

from sk_i2m2 import I2M2Classifier
from sk_i2m2.encoders import ModuleEncoder


def _data(n=60, seed=0):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 2
    X = {
        "tab": (rng.randn(n, 4) + y[:, None]).astype(np.float32),
        "img": (rng.randn(n, 1, 8, 8) + 0.5 * y[:, None, None, None]).astype(np.float32),
    }
    return X, y


# --------------------------------------------------------------------------
# Determinism

_SCRIPT = """
import hashlib, sys
import numpy as np
sys.path.insert(0, {tests!r})
from test_reliability import _data
from sk_i2m2 import I2M2Classifier
X, y = _data()
for seed in (0, 1):
    clf = I2M2Classifier(max_epochs=3, device="cpu", random_state=seed).fit(X, y)
    print(hashlib.sha256(clf.predict_proba(X).tobytes()).hexdigest())
"""


def test_same_seed_is_bit_identical_across_processes():
    tests = str(pathlib.Path(__file__).parent)
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", _SCRIPT.format(tests=tests)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONHASHSEED=str(hash_seed)),
        )
        for hash_seed in (1, 2)
    ]
    outputs = []
    for run in runs:
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        outputs.append(out.split())
    (seed0_a, seed1_a), (seed0_b, seed1_b) = outputs
    assert seed0_a == seed0_b and seed1_a == seed1_b
    assert seed0_a != seed1_a


# --------------------------------------------------------------------------
# Interruption


class InterruptAt(Callback):
    """Raise KeyboardInterrupt in the middle of epoch ``epoch`` of ``stage``."""

    def __init__(self, stage, epoch):
        self.stage = stage
        self.epoch = epoch

    def on_batch_end(self, net, training=False, **kwargs):
        stage = "pretrain" if "expert_checkpoint" in dict(net.callbacks_) else "finetune"
        if training and stage == self.stage and len(net.history) == self.epoch:
            raise KeyboardInterrupt


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _assert_state_equal(actual, expected):
    assert actual.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=0)


def test_interrupt_in_pretrain_keeps_best_experts_and_skips_finetune():
    X, y = _data()
    clf = I2M2Classifier(
        max_epochs=8,
        n_iter_no_change=50,
        random_state=0,
        verbose=1,
        callbacks=[InterruptAt("pretrain", 3)],
    )
    with pytest.warns(UserWarning, match=r"interrupted in the pretrain stage \(epoch 3 of 8\)"):
        clf.fit(X, y)
    assert clf.interrupted_stage_ == "pretrain"
    assert clf.finetune_net_ is None and clf.module_ is clf.pretrain_net_.module_
    assert len(clf.pretrain_net_.history) == 3
    checkpoint = dict(clf.pretrain_net_.callbacks_)["expert_checkpoint"]
    # The linear experts were solved before the stage (best epoch 0).
    trained = {n: e for n, e in checkpoint.best_epoch_.items() if n not in checkpoint.pretrained}
    assert trained and set(trained.values()) <= {1, 2}
    for name, best in checkpoint._best_state.items():
        _assert_state_equal(clf.module_.experts[name].state_dict(), best)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)

    # Interrupted in the first epoch: no epoch finished, still a usable model.
    clf.set_params(callbacks=[InterruptAt("pretrain", 1)])
    with pytest.warns(UserWarning, match=r"pretrain stage \(epoch 1 of 8\)"):
        clf.fit(X, y)
    assert np.isfinite(clf.predict_proba(X)).all()


def test_interrupt_in_finetune_keeps_best_epoch_and_next_fit_starts_clean():
    X, y = _data()
    clf = I2M2Classifier(
        max_epochs=4, n_iter_no_change=50, random_state=0, callbacks=[InterruptAt("finetune", 2)]
    )
    with pytest.warns(UserWarning, match=r"interrupted in the finetune stage \(epoch 2 of 4\)"):
        clf.fit(X, y)
    assert clf.interrupted_stage_ == "finetune"
    assert len(clf.pretrain_net_.history) == 4 and len(clf.finetune_net_.history) == 2
    early_stopping = dict(clf.finetune_net_.callbacks_)["early_stopping"]
    assert early_stopping.best_epoch_ == 1  # epoch 2 was cut short before scoring
    _assert_state_equal(_state(clf.module_), early_stopping.best_model_weights_)
    assert clf.predict(X).shape == (len(y),)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.set_params(callbacks=None).fit(X, y)
    assert clf.interrupted_stage_ is None
    assert len(clf.finetune_net_.history) == 4
    fresh = I2M2Classifier(max_epochs=4, n_iter_no_change=50, random_state=0).fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), fresh.predict_proba(X))


def test_early_stopping_is_not_an_interrupt():
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Batches of 16: noisy enough steps that patience 1 ends both stages early.
        clf = I2M2Classifier(
            cv=None,
            encoders={"tab": "mlp"},
            max_epochs=40,
            n_iter_no_change=1,
            batch_size=16,
            random_state=0,
        ).fit(X, y)
        assert len(clf.pretrain_net_.history) < 40 and len(clf.finetune_net_.history) < 40
        user_stop = EarlyStopping(monitor="train_loss", patience=1, threshold=10.0)
        clf.set_params(callbacks=[user_stop]).fit(X, y)
        assert len(clf.pretrain_net_.history) == 2
    assert clf.interrupted_stage_ is None and clf.finetune_net_ is not None


def test_interrupt_outside_training_keeps_previous_model():
    X, y = _data()
    clf = I2M2Classifier(max_epochs=1, random_state=0).fit(X, y)
    before = clf.predict_proba(X)

    def interrupted_factory():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        clf.set_params(encoders={"img": interrupted_factory}).fit(X, y)
    assert clf.interrupted_stage_ is None
    np.testing.assert_array_equal(clf.predict_proba(X), before)


# --------------------------------------------------------------------------
# Numerical robustness


class _NaNEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.linear(x) * float("nan")


def test_nan_loss_stops_with_an_error_and_keeps_previous_model():
    X, y = _data()
    clf = I2M2Classifier(max_epochs=1, random_state=0).fit(X, y)
    before = clf.predict_proba(X)
    clf.set_params(encoders={"tab": ModuleEncoder(_NaNEncoder)}, max_epochs=20)
    with pytest.raises(
        FloatingPointError,
        match=r"The pretrain stage diverged: train_loss is nan in epoch 1\. "
        r"Lower the learning rate",
    ):
        clf.fit(X, y)
    np.testing.assert_array_equal(clf.predict_proba(X), before)


def _all_losses_finite(clf):
    for net in (clf.pretrain_net_, clf.finetune_net_):
        for key in ("train_loss", "valid_loss"):
            assert np.isfinite(net.history[:, key]).all()


def test_large_scale_and_constant_features():
    rng = np.random.RandomState(0)
    n = 200
    y = rng.randint(0, 2, n)
    tab = 1e6 * (1 + rng.randn(n, 4) + y[:, None] * (np.arange(4) < 2))
    tab[:, 3] = 1e6  # constant
    X = {"tab": tab, "img": 1e6 * rng.rand(n, 1, 8, 8), "zeros": np.zeros((n, 3))}
    clf = I2M2Classifier(max_epochs=8, random_state=0).fit(X, y)
    _all_losses_finite(clf)
    assert np.isfinite(clf.predict_proba(X)).all()
    assert clf.score(X, y) > 0.75


def test_balanced_class_weight_helps_on_1_to_50_imbalance():
    def make(n0, n1, seed):
        rng = np.random.RandomState(seed)
        y = np.r_[np.zeros(n0, int), np.ones(n1, int)]
        signal = y[:, None] * (np.arange(3) < 1)
        return {"a": rng.randn(n0 + n1, 3) + signal, "b": rng.randn(n0 + n1, 3) + signal}, y

    X, y = make(1000, 20, 0)
    X_test, y_test = make(300, 300, 1)
    scores = {}
    for class_weight in (None, "balanced"):
        clf = I2M2Classifier(max_epochs=5, class_weight=class_weight, random_state=0).fit(X, y)
        _all_losses_finite(clf)
        scores[class_weight] = balanced_accuracy_score(y_test, clf.predict(X_test))
    assert scores["balanced"] > scores[None] + 0.1, scores


@pytest.mark.parametrize("counts, warns", [((5, 5), False), ((4, 4, 2), False), ((9, 1), True)])
def test_ten_samples(counts, warns):
    rng = np.random.RandomState(0)
    y = np.repeat(np.arange(len(counts)), counts)
    X = {"tab": rng.randn(10, 3) + y[:, None], "img": rng.randn(10, 1, 8, 8)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = I2M2Classifier(max_epochs=3, random_state=0).fit(X, y)
    messages = [str(w.message) for w in caught]
    stratify = [m for m in messages if "cannot be stratified" in m]
    assert bool(stratify) == warns, messages
    if warns:
        assert "(2 of 10 samples) cannot be stratified: class 1 has 1 sample(s)" in stratify[0]
    _all_losses_finite(clf)
    assert clf.predict_proba(X).shape == (10, len(counts))
    no_split = I2M2Classifier(max_epochs=3, early_stopping=False, random_state=0).fit(X, y)
    assert np.isfinite(no_split.predict_proba(X)).all()
