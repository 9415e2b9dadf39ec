"""The training fast path: skorch history semantics kept, optimizer and device settings."""

import numpy as np
import pytest
import torch
from conftest import requires_cuda

from sk_i2m2 import I2M2Classifier
from sk_i2m2.training.net import optimizer_speed_kwargs


def test_history_keeps_per_batch_float_losses(small_data):
    X, y = small_data
    clf = I2M2Classifier(max_epochs=2, finetune_epochs=2, batch_size=32, random_state=0).fit(X, y)
    for net in [clf.pretrain_net_, clf.finetune_net_]:
        for epoch in net.history:
            train = [b["train_loss"] for b in epoch["batches"] if "train_loss" in b]
            sizes = [b["train_batch_size"] for b in epoch["batches"] if "train_loss" in b]
            assert train and all(isinstance(v, float) for v in train)
            assert len(train) == epoch["train_batch_count"]
            assert epoch["train_loss"] == pytest.approx(np.average(train, weights=sizes))
            assert isinstance(epoch["valid_loss"], float)


def test_optimizer_uses_fused_or_multi_tensor_implementation():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert optimizer_speed_kwargs(torch.optim.AdamW, cpu) == {"fused": True}
    assert optimizer_speed_kwargs(torch.optim.AdamW, cuda) == {"fused": True}
    assert optimizer_speed_kwargs(torch.optim.RMSprop, cpu) == {"foreach": True}  # not fused
    assert optimizer_speed_kwargs(torch.optim.LBFGS, cpu) == {}


def test_fit_trains_with_the_fused_adamw_on_cpu(small_data):
    X, y = small_data
    clf = I2M2Classifier(max_epochs=2, finetune_epochs=1, random_state=0).fit(X, y)
    assert clf.optimizer_ is torch.optim.AdamW
    assert clf.pretrain_net_.optimizer_.defaults["fused"] is True


def test_an_optimizer_whose_device_has_no_fused_kernel_takes_foreach():
    class NoFusedKernel(torch.optim.AdamW):
        def __init__(self, params, lr=1e-3, foreach=None, fused=None):
            if fused:
                raise RuntimeError("`fused=True` requires all the params to be on CUDA")
            super().__init__(params, lr=lr, foreach=foreach)

    assert optimizer_speed_kwargs(NoFusedKernel, torch.device("cpu")) == {"foreach": True}


def test_mixed_precision_trains_on_cpu(small_data):
    X, y = small_data
    clf = I2M2Classifier(mixed_precision=True, max_epochs=20, random_state=0).fit(X, y)
    assert clf.predict_proba(X).dtype == np.float64  # computed in float64: no underflow to 0
    assert clf.score(X, y) > 0.6


@requires_cuda
def test_cuda_data_resident_and_streamed_give_same_model(small_data):
    X, y = small_data
    kwargs = dict(device="cuda", max_epochs=5, early_stopping=False, random_state=0)
    resident = I2M2Classifier(**kwargs).fit(X, y)
    streamed = I2M2Classifier(device_memory_budget=0, **kwargs).fit(X, y)
    np.testing.assert_allclose(resident.predict_proba(X), streamed.predict_proba(X), atol=1e-4)


@requires_cuda
def test_cuda_conv_weights_channels_last_and_compile(small_data):
    X, y = small_data
    clf = I2M2Classifier(device="cuda", max_epochs=2, random_state=0).fit(X, y)
    conv = next(m for m in clf.module_.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    compiled = I2M2Classifier(device="cuda", compile=True, max_epochs=2, random_state=0).fit(X, y)
    assert compiled.predict_proba(X).shape == (len(y), 3)
