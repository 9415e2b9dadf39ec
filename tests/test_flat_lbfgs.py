"""FlatLBFGS: torch's L-BFGS with the parameters moved as one flat tensor."""

import copy

import pytest
import torch
from conftest import requires_cuda
from torch import nn

from sk_i2m2.training.flat_lbfgs import FlatLBFGS, full_batch_optimizer

OPTIONS = {"max_iter": 5, "history_size": 10, "line_search_fn": "strong_wolfe"}


def _problem(seed=0, device="cpu"):
    torch.manual_seed(seed)
    module = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    X = torch.randn(64, 10)
    y = torch.randint(0, 3, (64,))
    return module.to(device), X.to(device), y.to(device)


def _train(module, optimizer_class, X, y, steps=6, before_step=None):
    optimizer = optimizer_class(module.parameters(), **OPTIONS)
    losses = []

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(module(X), y) + 1e-3 * sum(
            p.square().sum() for p in module.parameters()
        )
        loss.backward()
        return loss

    for step in range(steps):
        if before_step is not None:
            before_step(step, module)
        losses.append(float(optimizer.step(closure).detach()))
    return optimizer, losses


def _assert_same_parameters(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=requires_cuda)])
def test_same_iterates_as_torch_lbfgs(device):
    module, X, y = _problem(device=device)
    reference = copy.deepcopy(module)
    optimizer, losses = _train(module, FlatLBFGS, X, y)
    _, reference_losses = _train(reference, torch.optim.LBFGS, X, y)
    assert losses == pytest.approx(reference_losses, rel=1e-5)
    assert losses[-1] < 0.5 * losses[0]  # it trained
    _assert_same_parameters(module, reference)
    assert optimizer.state[optimizer._params[0]]["func_evals"] > 6
    assert optimizer._flat.device == module[0].weight.device


def test_parameters_are_views_of_one_tensor():
    module, X, y = _problem()
    optimizer, _ = _train(module, FlatLBFGS, X, y, steps=1)
    flat = optimizer._flat
    assert flat is not None and flat.numel() == sum(p.numel() for p in module.parameters())
    start = flat.data_ptr()
    end = start + flat.numel() * flat.element_size()
    for p in module.parameters():
        assert isinstance(p, nn.Parameter) and p.requires_grad
        assert start <= p.data_ptr() < end
    # The module's state is the flat tensor's values, and loads into it.
    state = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        flat.zero_()
    assert all(float(v.abs().sum()) == 0 for v in module.state_dict().values())
    module.load_state_dict(state)
    torch.testing.assert_close(torch.cat([p.reshape(-1) for p in module.parameters()]), flat)


def test_replaced_parameter_data_is_flattened_again():
    """A parameter given new data (as by ``module.to``) trains on from its current value."""
    module, X, y = _problem()
    reference = copy.deepcopy(module)

    def replace_data(step, module):
        if step == 2:
            for p in module.parameters():
                p.data = p.data.clone()

    optimizer, losses = _train(module, FlatLBFGS, X, y, before_step=replace_data)
    _, reference_losses = _train(reference, torch.optim.LBFGS, X, y)
    assert losses == pytest.approx(reference_losses, rel=1e-5)
    _assert_same_parameters(module, reference)
    flat = optimizer._flat  # a new flat tensor, which the parameters are views of
    start, end = flat.data_ptr(), flat.data_ptr() + flat.numel() * flat.element_size()
    assert all(start <= p.data_ptr() < end for p in module.parameters())


def test_parameters_of_several_dtypes_move_one_at_a_time():
    module, X, y = _problem()
    module[2].double()
    reference = copy.deepcopy(module)

    def forward(m):
        return lambda X: m[2](m[1](m[0](X)).double())

    for m in (module, reference):
        m.forward = forward(m)
    optimizer, losses = _train(module, FlatLBFGS, X, y)
    _, reference_losses = _train(reference, torch.optim.LBFGS, X, y)
    assert optimizer._flat is None
    assert losses == pytest.approx(reference_losses, rel=1e-5)
    _assert_same_parameters(module, reference)


def test_full_batch_optimizer_replaces_torch_lbfgs_only():
    class MyLBFGS(torch.optim.LBFGS):
        pass

    assert full_batch_optimizer(torch.optim.LBFGS) is FlatLBFGS
    assert full_batch_optimizer(MyLBFGS) is MyLBFGS
    assert full_batch_optimizer(FlatLBFGS) is FlatLBFGS
