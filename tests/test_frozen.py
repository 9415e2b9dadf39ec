"""Frozen encoders: features computed once per fit and per prediction, shared by the experts."""

import sys

import numpy as np
import pytest
import torch
from conftest import requires_cuda
from torch import nn

from sk_i2m2 import I2M2Classifier
from sk_i2m2.encoders import ModuleEncoder
from sk_i2m2.nn.frozen import FrozenModule

ROWS = []  # batch sizes seen by every Backbone's forward


class Backbone(nn.Module):
    """A small conv stack with BatchNorm and dropout, recording the rows it sees."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 6, 3),
            nn.BatchNorm2d(6),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
        )

    def forward(self, x):
        ROWS.append(len(x))
        return self.net(x)


def make_data(n, seed=0, missing=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    image = rng.randn(n, 1, 10, 10).astype(np.float32)
    image[:, :, 3:7, 3:7] += 1.5 * (2 * y - 1)[:, None, None, None]
    tab = (rng.randn(n, 3) + 0.5 * (2 * y - 1)[:, None]).astype(np.float32)
    image[:missing] = np.nan
    return {"image": image, "tab": tab}, y


@pytest.fixture
def backbone():
    torch.manual_seed(0)
    return Backbone()


def fit(backbone, X, y, **params):
    params = {"max_epochs": 4, "random_state": 0, **params}
    encoders = {"image": ModuleEncoder(backbone, trainable=False)}
    return I2M2Classifier(encoders=encoders, **params).fit(X, y)


@pytest.mark.parametrize("cv", [None, 3])
def test_frozen_encoder_runs_once_per_fit_and_per_predict(backbone, cv):
    X, y = make_data(240)
    ROWS.clear()
    clf = fit(backbone, X, y, cv=cv)
    # Every row once (training and validation rows alike), whatever the folds and epochs.
    assert sum(ROWS) == 240
    assert clf.frozen_modalities_ == ["image"]
    ROWS.clear()
    X_new, _ = make_data(50, seed=1)
    proba = clf.predict_proba(X_new)
    assert sum(ROWS) == 50 and proba.shape == (50, 2)
    assert clf.score(X, y) > 0.8


def test_cached_and_uncached_frozen_paths_agree(backbone):
    X, y = make_data(240, missing=12)
    # Both with mini-batch AdamW: augmentation makes "auto" choose it (a line
    # search cannot follow a loss that changes with every batch).
    cached = fit(backbone, X, y, cv=None, optimizer=torch.optim.AdamW)
    # An augmented modality runs its frozen encoder on every batch, inside the experts.
    ROWS.clear()
    uncached = fit(backbone, X, y, cv=None, augment={"image": lambda batch: batch})
    assert uncached.frozen_modalities_ == [] and len(ROWS) > 20
    assert len(cached.module_.frozen) == 1 and len(uncached.module_.frozen) == 0
    X_new, _ = make_data(60, seed=1, missing=5)
    np.testing.assert_allclose(
        cached.predict_proba(X_new), uncached.predict_proba(X_new), rtol=1e-4, atol=1e-5
    )


def test_frozen_weights_and_statistics_never_change(backbone):
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    X, y = make_data(240)
    clf = fit(backbone, X, y, cv=3)
    for fold in clf.module_.folds:
        after = fold.frozen["image"].body.net.state_dict()
        assert after.keys() == before.keys()
        for key, value in before.items():
            assert torch.equal(after[key], value), key  # BatchNorm statistics included
        assert not any(p.requires_grad for p in fold.frozen["image"].parameters())


def test_frozen_module_stays_in_eval_mode_when_trained_every_batch(backbone):
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    X, y = make_data(240)
    # Augmented, so the frozen encoder runs inside the experts on every training batch.
    clf = fit(backbone, X, y, cv=None, augment={"image": lambda batch: batch})
    clf.module_.train()
    frozen = [m for m in clf.module_.modules() if isinstance(m, FrozenModule)]
    assert len(frozen) == 2  # in the intra and in the inter expert
    for module in frozen:
        assert module.training and not any(m.training for m in module.net.modules())
        for key, value in module.net.state_dict().items():
            assert torch.equal(value, before[key]), key


def _round_trip(clf, tmp_path, device):
    X_new, _ = make_data(40, seed=2)
    expected = clf.predict_proba(X_new)
    clf.save(tmp_path / "model")
    loaded = I2M2Classifier.load(tmp_path / "model", encoders={"image": Backbone}, device=device)
    assert loaded.frozen_modalities_ == ["image"]
    assert loaded.device_ == torch.device("cpu")
    ROWS.clear()
    np.testing.assert_allclose(loaded.predict_proba(X_new), expected, rtol=1e-4, atol=1e-6)
    assert sum(ROWS) == 40  # once, for both the ensemble's folds and their experts


def test_frozen_model_saves_and_loads_on_cpu(backbone, tmp_path):
    X, y = make_data(200)
    _round_trip(fit(backbone, X, y, cv=2, device="cpu"), tmp_path, "cpu")


@requires_cuda
def test_frozen_model_trained_on_cuda_loads_on_cpu(backbone, tmp_path):
    X, y = make_data(200)
    clf = fit(backbone, X, y, cv=None, device="cuda")
    assert next(clf.module_.frozen.parameters()).device.type == "cuda"
    _round_trip(clf, tmp_path, "cpu")


def test_frozen_encoder_failure_names_the_modality():
    X, y = make_data(60)
    bad = ModuleEncoder(nn.Linear(3, 2), trainable=False)
    with pytest.raises(ValueError, match="modality 'image'.*ModuleEncoder"):
        I2M2Classifier(encoders={"image": bad}, max_epochs=1).fit(X, y)


def test_named_backbone_without_torchvision_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails as if not installed
    X, y = make_data(20)
    with pytest.raises(ImportError, match=r"pip install sk-i2m2\[vision\]"):
        I2M2Classifier(encoders={"image": "resnet18"}).fit(X, y)


def test_frozen_encoder_of_an_on_disk_modality(backbone, tmp_path):
    # A memory-mapped image modality: the frozen encoder reads it a batch at a
    # time and gives the model of the same data in memory.
    X, y = make_data(120)
    # Both with mini-batch AdamW: on-disk data is read a batch at a time, so
    # "auto" would train the in-memory copy full-batch with L-BFGS instead.
    params = dict(cv=None, max_epochs=2, optimizer=torch.optim.AdamW)
    in_memory = fit(backbone, X, y, **params)
    path = tmp_path / "image.npy"
    np.save(path, X["image"])
    on_disk = {**X, "image": np.load(path, mmap_mode="r")}
    ROWS.clear()
    lazy = fit(backbone, on_disk, y, **params)
    assert sum(ROWS) == 120
    np.testing.assert_allclose(
        lazy.predict_proba(on_disk), in_memory.predict_proba(X), rtol=1e-5, atol=1e-6
    )
