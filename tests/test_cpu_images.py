"""Images trained from scratch on the CPU: default conv encoders for large inputs, allocator."""

import copy
import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from sk_i2m2 import I2M2Classifier, _allocator
from sk_i2m2.encoders import Conv2dEncoder, Conv3dEncoder


def _convs(net):
    return [m for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]


@pytest.mark.parametrize(
    "side, stride, kernel, n_blocks",
    [(8, 1, 5, 2), (28, 1, 5, 3), (111, 1, 5, 4), (112, 2, 5, 4), (224, 4, 5, 4), (448, 8, 9, 4)],
)
def test_default_first_stride_brings_large_images_to_a_working_side(side, stride, kernel, n_blocks):
    net = Conv2dEncoder().build((1, side, side))
    convs = _convs(net)
    assert convs[0].stride == (stride, stride)
    assert convs[0].kernel_size == (kernel, kernel)
    assert len(convs) == n_blocks
    assert net(torch.zeros(2, 1, side, side)).shape == (2, net.out_features)


@pytest.mark.parametrize(
    "pool, torch_pool, shape",
    [
        ("FeaturePool2d", torch.nn.AdaptiveAvgPool2d, (3, 8, 2, 2)),
        ("FeaturePool2d", torch.nn.AdaptiveAvgPool2d, (3, 8, 5, 7)),
        ("FeaturePool3d", torch.nn.AdaptiveAvgPool3d, (3, 8, 2, 2, 2)),
        ("FeaturePool3d", torch.nn.AdaptiveAvgPool3d, (3, 8, 4, 2, 2)),
    ],
)
def test_feature_pool_is_torchs_adaptive_pool_and_skips_inputs_at_its_size(pool, torch_pool, shape):
    from sk_i2m2.nn import encoder_modules

    x = torch.randn(*shape, requires_grad=True)
    x_reference = x.detach().clone().requires_grad_(True)
    out, expected = getattr(encoder_modules, pool)(2)(x), torch_pool(2)(x_reference)
    assert (out is x) == all(side == 2 for side in shape[2:])
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    weights = torch.randn_like(expected)
    (out * weights).sum().backward()
    (expected * weights).sum().backward()
    torch.testing.assert_close(x.grad, x_reference.grad, rtol=0, atol=0)


def test_small_images_reach_the_feature_pool_at_its_size_and_pass_through():
    net = Conv2dEncoder().build((1, 8, 8))
    seen = {}
    pool = next(m for m in net.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d))
    pool.register_forward_hook(lambda module, inputs, output: seen.update(same=output is inputs[0]))
    net(torch.zeros(2, 1, 8, 8))
    assert seen["same"]


def test_first_stride_one_keeps_full_resolution_blocks():
    net = Conv2dEncoder(first_stride=1).build((1, 224, 224))
    assert [c.stride for c in _convs(net)] == [(1, 1)] * 4
    assert [c.out_channels for c in _convs(net)] == [16, 32, 64, 64]
    # Small volumes keep their blocks; a large one is strided too.
    assert _convs(Conv3dEncoder().build((1, 8, 8, 8)))[0].stride == (1, 1, 1)
    assert _convs(Conv3dEncoder().build((1, 112, 112, 112)))[0].stride == (2, 2, 2)


class _FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, param, value):
        self.calls.append(("mallopt", param, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


@pytest.fixture
def fake_libc(monkeypatch):
    libc = _FakeLibc()
    monkeypatch.setattr(_allocator, "_glibc", lambda: libc)
    for name in (*_allocator._USER_SETTINGS, "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    return libc


RAISE = [
    ("mallopt", _allocator.M_MMAP_THRESHOLD, _allocator.TRAINING_THRESHOLD),
    ("mallopt", _allocator.M_TRIM_THRESHOLD, _allocator.TRAINING_THRESHOLD),
]
RESTORE = [
    ("mallopt", _allocator.M_MMAP_THRESHOLD, _allocator.DYNAMIC_MMAP_THRESHOLD_MAX),
    ("mallopt", _allocator.M_TRIM_THRESHOLD, 2 * _allocator.DYNAMIC_MMAP_THRESHOLD_MAX),
    ("malloc_trim", 0),
]


def test_allocator_thresholds_raised_once_and_restored_after_fit_and_predict(fake_libc, small_data):
    X, y = small_data
    # The validation rows' logits are computed inside fit: nested, no second pair.
    clf = I2M2Classifier(max_epochs=2, cv=None, random_state=0).fit(X, y)
    assert fake_libc.calls == RAISE + RESTORE
    fake_libc.calls.clear()
    clf.predict(X)
    assert fake_libc.calls == RAISE + RESTORE


def test_allocator_nested_and_failing_blocks_restore_once(fake_libc):
    cpu = torch.device("cpu")
    with pytest.raises(RuntimeError, match="boom"):
        with _allocator.cpu_allocator(cpu):
            with _allocator.cpu_allocator(cpu):
                assert fake_libc.calls == RAISE
            assert fake_libc.calls == RAISE
            raise RuntimeError("boom")
    assert fake_libc.calls == RAISE + RESTORE


def test_allocator_untouched_off_cpu_off_glibc_and_with_user_settings(fake_libc, monkeypatch):
    with _allocator.cpu_allocator(torch.device("cuda")):
        pass
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    with _allocator.cpu_allocator(torch.device("cpu")):
        pass
    assert fake_libc.calls == []
    monkeypatch.undo()
    monkeypatch.setattr("platform.libc_ver", lambda: ("musl", ""))
    assert _allocator._glibc() is None


@pytest.mark.skipif(_allocator._glibc() is None, reason="needs glibc")
def test_allocator_calls_real_glibc(monkeypatch):
    for name in _allocator._USER_SETTINGS + ("GLIBC_TUNABLES",):
        monkeypatch.delenv(name, raising=False)
    # glibc accepts the threshold the block sets (mallopt returns 1 on success).
    libc = _allocator._glibc()
    assert libc.mallopt(_allocator.M_MMAP_THRESHOLD, _allocator.TRAINING_THRESHOLD) == 1
    with _allocator.cpu_allocator(torch.device("cpu")):
        assert _allocator._depth == 1
        assert torch.ones(2**22).sum() == 2**22
    assert _allocator._depth == 0


def test_large_image_fit_learns_above_chance():
    # Digits upsampled to 112x112: the default encoder strides its first convolution.
    digits = load_digits()
    images = digits.images[:450].repeat(14, axis=1).repeat(14, axis=2)[:, None] / 16
    rng = np.random.RandomState(0)
    images = (images + rng.normal(0, 0.3, images.shape)).astype(np.float32)
    y = digits.target[:450]
    clf = I2M2Classifier(max_epochs=3, early_stopping=False, random_state=0)
    clf.fit({"image": images[:300]}, y[:300])
    assert _convs(clf.module_)[0].stride == (2, 2)
    assert clf.score({"image": images[300:]}, y[300:]) > 0.5


def test_conv_encoders_run_channels_last_on_the_cpu(small_data):
    X, y = small_data
    clf = I2M2Classifier(cv=None, max_epochs=2, random_state=0).fit(X, y)
    convs = _convs(clf.module_)
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    # The layout changes the kernels, not the model.
    contiguous = copy.deepcopy(clf.module_).to(memory_format=torch.contiguous_format)
    inputs = {m: torch.as_tensor(v) for m, v in X.items()}
    with torch.no_grad():
        torch.testing.assert_close(
            contiguous(**inputs), clf.module_(**inputs), rtol=1e-4, atol=1e-5
        )


def test_model_saved_before_first_stride_loads_with_full_resolution(tmp_path):
    rng = np.random.RandomState(0)
    X = {"image": rng.randn(40, 1, 112, 112).astype(np.float32)}
    y = rng.randint(0, 2, 40)
    clf = I2M2Classifier(
        encoders={"image": Conv2dEncoder(first_stride=1)},
        max_epochs=1,
        early_stopping=False,
        random_state=0,
    ).fit(X, y)
    clf.save(tmp_path / "model")
    # A file from before first_stride existed, whose fitted spec had default channels.
    config_path = tmp_path / "model" / "config.json"
    config = json.loads(config_path.read_text())
    spec_params = config["fitted"]["encoders_"]["image"]["params"]
    del spec_params["first_stride"]
    config["params"]["encoders"] = None
    config_path.write_text(json.dumps(config))
    loaded = I2M2Classifier.load(tmp_path / "model")
    assert loaded.encoders_["image"].first_stride == 1
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
