"""Train-time augmentation (``augment``): training batches only, never validation or prediction."""

import numpy as np
import pytest
import torch

from sk_i2m2 import I2M2Classifier


def make_data(n, seed=0):
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    image = rng.randn(n, 1, 8, 8).astype(np.float32)
    image[:, :, 2:6, 2:6] += 1.5 * (2 * y - 1)[:, None, None, None]
    tab = (rng.randn(n, 3) + 0.8 * (2 * y - 1)[:, None]).astype(np.float32)
    return {"image": image, "tab": tab}, y


class Recorder:
    """Records the batches it is given and returns them unchanged."""

    def __init__(self):
        self.batches = []

    def __call__(self, batch):
        self.batches.append((batch.shape, batch.device))
        return batch


def _n_train_batches(net):
    return sum(sum("train_loss" in b for b in epoch["batches"]) for epoch in net.history)


def test_augment_sees_every_training_batch_and_nothing_else():
    X, y = make_data(200)
    record = Recorder()
    clf = I2M2Classifier(
        augment={"image": record}, max_epochs=3, batch_size=32, cv=None, random_state=0
    ).fit(X, y)
    n_steps = _n_train_batches(clf.pretrain_net_) + _n_train_batches(clf.finetune_net_)
    # First a check of the shape it returns, on two rows, before any training.
    check = record.batches.pop(0)
    assert check == ((2, 1, 8, 8), torch.device("cpu"))
    # Then training batches of the image modality only; validation batches pass untouched.
    assert len(record.batches) == n_steps
    n_train = 200 - round(0.15 * 200)
    assert sum(shape[0] for shape, _ in record.batches[: n_steps // 6]) == n_train
    assert {shape[1:] for shape, _ in record.batches} == {(1, 8, 8)}
    assert {device for _, device in record.batches} == {clf.device_}
    record.batches.clear()
    clf.predict_proba(X)
    clf.expert_proba(X)
    assert record.batches == []


def test_augment_changes_what_the_experts_train_on():
    X, y = make_data(200)
    params = dict(max_epochs=5, cv=None, random_state=0, dependencies="intra")
    plain = I2M2Classifier(**params).fit(X, y)
    # Trained on negated images, the image expert reads untouched ones backwards.
    flipped = I2M2Classifier(augment={"image": torch.neg}, **params).fit(X, y)
    assert np.corrcoef(plain.expert_proba(X)["image"][:, 1], y)[0, 1] > 0.5
    assert np.corrcoef(flipped.expert_proba(X)["image"][:, 1], y)[0, 1] < -0.5


@pytest.mark.parametrize(
    "augment, error, match",
    [
        ({"xray": Recorder()}, ValueError, "augment names modality 'xray', which is not in X"),
        ({"image": "flip"}, TypeError, r"augment\['image'\] must be a callable"),
        (
            {"image": lambda batch: batch[..., :4]},
            ValueError,
            r"augment\['image'\] must return a batch of the shape it is given: a batch of "
            r"modality 'image' of shape \(2, 1, 8, 8\) came back as \(2, 1, 8, 4\)",
        ),
        (
            {"image": lambda batch: batch @ torch.ones(3, 3)},
            ValueError,
            r"augment\['image'\] fails on a batch of modality 'image' of shape \(2, 1, 8, 8\)",
        ),
    ],
)
def test_bad_augment_is_refused_before_training(augment, error, match):
    X, y = make_data(40)
    with pytest.raises(error, match=match):
        I2M2Classifier(augment=augment, max_epochs=1).fit(X, y)
