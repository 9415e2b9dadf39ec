"""The per-evaluation and per-epoch machinery of full-batch (L-BFGS) stages.

Each shortcut must train the model the plain skorch and torch code trains:
the same penalty and gradients, the same epoch log where it is shown.
"""

import pickle

import pytest
import torch
from conftest import make_independent
from skorch.callbacks import PrintLog
from torch import nn

from sk_i2m2 import I2M2Classifier


@pytest.fixture(scope="module")
def small_fit():
    X, y = make_independent(120, n_modalities=2)
    return I2M2Classifier(max_epochs=6, random_state=0).fit(X, y)


def test_penalty_with_collected_parameters_is_the_sum_of_squared_weights(small_fit):
    module = small_fit.fold_nets_[0][0].module_
    penalised = module.penalised_parameters()
    # Weight matrices only: no bias, no null token.
    for name, parameters in penalised.items():
        expert = module.experts[name]
        assert {id(p) for p in parameters} == {
            id(p) for p in expert.parameters() if p.ndim >= 2 and p.requires_grad
        }
    expected = sum(p.square().sum() for ps in penalised.values() for p in ps)
    assert torch.equal(module.squared_weight_norm(penalised), expected)
    assert torch.equal(module.squared_weight_norm(), expected)
    module.stopped = frozenset({"inter"})
    try:
        without_inter = sum(
            p.square().sum() for name, ps in penalised.items() if name != "inter" for p in ps
        )
        assert torch.equal(module.squared_weight_norm(penalised), without_inter)
    finally:
        module.stopped = frozenset()


def test_penalty_gradient_is_weight_decay_times_the_weights(small_fit):
    module = small_fit.fold_nets_[0][0].module_
    module.zero_grad()
    module.squared_weight_norm(module.penalised_parameters()).mul(0.5 * 0.3).backward()
    for parameters in module.penalised_parameters().values():
        for p in parameters:
            torch.testing.assert_close(p.grad, 0.3 * p.detach(), rtol=0, atol=0)
    module.zero_grad()


def test_penalty_is_collected_again_for_a_new_module(small_fit):
    net = small_fit.fold_nets_[0][0]
    module = net.module_
    assert net._penalised_for(module) is not None
    assert net._penalised_for(nn.Linear(2, 2)) is None


def test_a_pickled_stage_net_carries_no_collected_parameters(small_fit):
    net = small_fit.fold_nets_[0][0]
    assert "_penalised" not in net.__getstate__()
    clone = pickle.loads(pickle.dumps(net))
    assert clone._penalised_for(clone.module_) is None


def test_epoch_log_is_not_formatted_when_silent(monkeypatch):
    calls = []
    monkeypatch.setattr(PrintLog, "table", lambda self, row: calls.append(row) or "h\n-\nrow")
    X, y = make_independent(80, n_modalities=2)
    I2M2Classifier(max_epochs=2, cv=None, random_state=0).fit(X, y)
    assert calls == []


def test_epoch_log_reaches_its_own_sink_and_prints_when_verbose(small_fit, capsys):
    net = small_fit.fold_nets_[0][0]
    log = dict(net.callbacks_)["print_log"]
    assert isinstance(log, PrintLog)
    lines = []
    log.set_params(sink=lines.append)
    log.initialize()
    try:
        log.on_epoch_end(net)
    finally:
        log.set_params(sink=print)
    assert net.verbose == 0 and "train_loss" in lines[0]
    X, y = make_independent(80, n_modalities=2)
    I2M2Classifier(max_epochs=2, cv=None, random_state=0, verbose=2).fit(X, y)
    assert "train_loss" in capsys.readouterr().out
