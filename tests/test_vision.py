"""torchvision backbones as encoders (the ``vision`` extra); offline: no weights are downloaded."""

import numpy as np
import pytest
import torch

torchvision = pytest.importorskip("torchvision")

from torchvision.transforms import v2  # noqa: E402

from sk_i2m2 import I2M2Classifier  # noqa: E402
from sk_i2m2.encoders import TorchvisionEncoder, resolve_encoder  # noqa: E402
from sk_i2m2.nn.frozen import FrozenModule  # noqa: E402


def make_images(n, seed=0, side=32):
    """1-channel images in [0, 1] and a table; the table carries the label."""
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    image = rng.rand(n, 1, side, side).astype(np.float32)
    image[:, :, : side // 2] *= (0.5 + 0.5 * y)[:, None, None, None]
    tab = (rng.randn(n, 3) + 1.5 * (2 * y - 1)[:, None]).astype(np.float32)
    return {"xray": image, "tab": tab}, y


def test_names_resolve_to_torchvision_encoders_and_unknown_names_are_refused():
    spec = resolve_encoder("xray", "resnet18", (1, 32, 32))
    assert isinstance(spec, TorchvisionEncoder)
    assert (spec.name, spec.weights, spec.trainable, spec.frozen) == (
        "resnet18",
        "DEFAULT",
        "none",
        True,
    )
    with pytest.raises(ValueError, match="Unknown torchvision backbone 'resnet19'.*'xray'"):
        resolve_encoder("xray", TorchvisionEncoder("resnet19"), (1, 32, 32))
    with pytest.raises(ValueError, match="Unknown weights 'IMAGENET9K'"):
        resolve_encoder("xray", TorchvisionEncoder(weights="IMAGENET9K"), (1, 32, 32))
    with pytest.raises(ValueError, match=r"r3d_18 takes volumes \(n, C, D, H, W\)"):
        resolve_encoder("xray", TorchvisionEncoder("r3d_18", weights=None), (32, 32))
    with pytest.raises(ValueError, match="with 1 or 3 channels"):
        resolve_encoder("xray", TorchvisionEncoder(weights=None), (2, 32, 32))


@pytest.mark.parametrize(
    "name, sample_shape, n_features",
    [("resnet18", (1, 32, 32), 512), ("resnet18", (32, 32), 512), ("r3d_18", (1, 2, 16, 16), 512)],
)
def test_backbone_adapts_the_input_and_outputs_features(name, sample_shape, n_features):
    body = TorchvisionEncoder(name, weights=None).build(sample_shape)
    assert isinstance(body, FrozenModule)
    adapter = body.net
    assert adapter.size == ((224, 224) if name == "resnet18" else (112, 112))
    # weights=None: ImageNet normalisation.
    torch.testing.assert_close(adapter.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    with torch.no_grad():
        assert body(torch.rand(2, *sample_shape)).shape == (2, n_features)


@pytest.mark.parametrize(
    "trainable, prefixes",
    [("none", ()), ("last", ("layer4.",)), (2, ("layer3.", "layer4.")), ("all", ("",))],
)
def test_trainable_chooses_which_parameters_get_gradients(trainable, prefixes):
    body = TorchvisionEncoder("resnet18", weights=None, trainable=trainable).build((1, 32, 32))
    model = body.net.model
    body.train()
    x = torch.rand(2, 1, 32, 32, requires_grad=True)  # so that a frozen body still backpropagates
    body(x).sum().backward()
    for name, p in model.named_parameters():
        expected = name.startswith(prefixes) if prefixes else False
        assert (p.grad is not None) == expected, name
        assert p.requires_grad == expected, name
    # BatchNorm of frozen blocks keeps its statistics in training mode.
    assert model.layer1[0].bn1.training is (trainable == "all")


def test_frozen_backbone_fits_predicts_and_runs_once(tmp_path):
    X, y = make_images(80)
    rows = []
    clf = I2M2Classifier(
        encoders={"xray": TorchvisionEncoder("mobilenet_v3_small", weights=None)},
        max_epochs=3,
        cv=None,
        random_state=0,
    )
    clf.fit(X, y)
    assert clf.frozen_modalities_ == ["xray"]
    frozen = clf.module_.frozen["xray"]
    frozen.register_forward_hook(lambda module, args, out: rows.append(len(args[0])))
    X_new, y_new = make_images(30, seed=1)
    assert clf.score(X_new, y_new) > 0.8
    assert sum(rows) == 30


def test_weights_file_and_save_load(tmp_path):
    torch.manual_seed(1)
    reference = torchvision.models.mobilenet_v3_small(weights=None)
    torch.save(reference.state_dict(), tmp_path / "weights.pth")
    X, y = make_images(60)
    spec = TorchvisionEncoder("mobilenet_v3_small", weights=str(tmp_path / "weights.pth"))
    clf = I2M2Classifier(encoders={"xray": spec}, max_epochs=2, cv=None, random_state=0)
    clf.fit(X, y)
    model = clf.module_.frozen["xray"].body.net.model
    torch.testing.assert_close(model.features[0][0].weight, reference.features[0][0].weight)
    clf.save(tmp_path / "model")
    loaded = I2M2Classifier.load(tmp_path / "model", device="cpu")
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=1e-4, atol=1e-6)


def test_frozen_volume_backbone_fits_and_predicts():
    rng = np.random.RandomState(0)
    y = rng.randint(0, 2, 16)
    volume = rng.rand(16, 1, 2, 16, 16).astype(np.float32)
    tab = (rng.randn(16, 2) + 2 * (2 * y - 1)[:, None]).astype(np.float32)
    clf = I2M2Classifier(
        encoders={"ct": TorchvisionEncoder("r3d_18", weights=None)},
        max_epochs=2,
        early_stopping=False,
        random_state=0,
    ).fit({"ct": volume, "tab": tab}, y)
    assert clf.frozen_modalities_ == ["ct"]
    assert clf.module_.experts["ct"].head.in_features == 512
    assert clf.predict_proba({"ct": volume, "tab": tab}).shape == (16, 2)


def test_torchvision_transforms_augment_a_fine_tuned_backbone():
    X, y = make_images(48)
    seen = []

    def flip(batch):
        seen.append(batch.shape)
        return v2.RandomHorizontalFlip(p=1.0)(batch)

    spec = TorchvisionEncoder("mobilenet_v3_small", weights=None, trainable="last")
    clf = I2M2Classifier(
        encoders={"xray": spec},
        augment={"xray": flip},
        max_epochs=1,
        early_stopping=False,
        batch_size=16,
        random_state=0,
    ).fit(X, y)
    # The shape check on two rows before training, then 3 batches in each of 2 stages.
    assert seen[0] == (2, 1, 32, 32)
    assert clf.frozen_modalities_ == [] and len(seen) == 7
    assert clf.predict_proba(X).shape == (48, 2) and len(seen) == 7
