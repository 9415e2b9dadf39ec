"""Torch threads during fit and predict: chosen for the work, the previous count restored."""

import numpy as np
import pytest
import torch
from conftest import Explode, fit_probed, recorded_in_training

from sk_i2m2 import _parallel, _threads


@pytest.fixture
def default_threads(monkeypatch):
    """torch at its default count of 4 threads, on a machine with 8 CPUs and no limits."""
    previous = torch.get_num_threads()
    monkeypatch.setattr(_threads, "_IMPORT_THREADS", 4)
    monkeypatch.setattr(_parallel, "_available_cpus", lambda: 8)
    monkeypatch.setattr(_parallel, "_threadpoolctl_threads", lambda: None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(previous)


def fit_small(**params):
    return fit_probed("torch_threads", torch.get_num_threads, **params)


def threads_in_training(clf):
    return recorded_in_training(clf, "torch_threads")


def test_a_small_fit_trains_with_one_thread_and_restores_the_default(default_threads):
    clf, _ = fit_small()
    assert threads_in_training(clf) == {1}
    assert torch.get_num_threads() == 4


def test_the_previous_count_comes_back_after_an_error(default_threads):
    with pytest.raises(RuntimeError, match="boom"):
        fit_small(callbacks=[Explode()])
    assert torch.get_num_threads() == 4


def test_a_count_the_user_set_is_kept(default_threads):
    torch.set_num_threads(2)  # differs from the count at import: the user's choice
    clf, _ = fit_small()
    assert threads_in_training(clf) == {2}
    assert torch.get_num_threads() == 2


def test_large_work_uses_the_default_threads_capped_by_the_cpu_share(default_threads, monkeypatch):
    monkeypatch.setattr(_threads, "PARALLEL_STEP_FLOPS", 0.0)
    clf, _ = fit_small()
    assert threads_in_training(clf) == {4}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # an engine's (or the user's) limit
    clf, _ = fit_small()
    assert threads_in_training(clf) == {3}
    assert torch.get_num_threads() == 4


def test_work_above_the_threshold_trains_with_the_default_threads(default_threads, monkeypatch):
    # The set-up before training runs with one thread: the fit must still
    # judge the training batches against the count it started with.
    monkeypatch.setattr(_threads, "PARALLEL_STEP_FLOPS", 1e3)
    clf, _ = fit_small()
    assert threads_in_training(clf) == {4}
    assert torch.get_num_threads() == 4


def test_predict_uses_one_thread_for_a_small_model(default_threads, monkeypatch):
    clf, X = fit_small()
    seen = []
    forward = type(clf.module_).forward

    def probe(module, **batch):
        seen.append(torch.get_num_threads())
        return forward(module, **batch)

    monkeypatch.setattr(type(clf.module_), "forward", probe)
    proba = clf.predict_proba(X)
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == 4
    np.testing.assert_allclose(proba.sum(1), 1.0)


def test_forward_flops_counts_linear_convolution_and_recurrent_layers():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(10, 3)
            self.conv = torch.nn.Conv2d(2, 4, 3)
            self.gru = torch.nn.GRU(5, 6, batch_first=True)

        def forward(self, a, b, c):
            return self.linear(a), self.conv(b), self.gru(c)

    batch = {"a": torch.randn(7, 10), "b": torch.randn(7, 2, 5, 5), "c": torch.randn(7, 4, 5)}
    linear = 2 * 10 * 3 * 7
    conv = 2 * (2 * 3 * 3) * (7 * 4 * 3 * 3)
    gru = 2 * (3 * 6 * 5 + 3 * 6 * 6) * (7 * 4)
    assert _threads.forward_flops(Model(), batch) == linear + conv + gru


def test_small_solves_use_one_blas_thread_and_restore_the_count():
    # scipy's L-BFGS-B (the linear experts' solves, the calibration) calls
    # BLAS on vectors of a few hundred entries: one thread, the count before
    # restored after.
    from threadpoolctl import threadpool_info, threadpool_limits

    from sk_i2m2.training.lbfgsb import minimize_lbfgsb

    def blas_threads():
        return [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]

    during = []

    def objective(x):
        during.append(blas_threads())
        return (x - 3.0).square().sum()

    with threadpool_limits(limits=2, user_api="blas"):  # a user's count, not one
        before = blas_threads()
        (x,), _ = minimize_lbfgsb(objective, [torch.zeros(4, dtype=torch.float64)])
        after = blas_threads()
    torch.testing.assert_close(x, torch.full((4,), 3.0, dtype=torch.float64))
    assert before and all(threads == 2 for threads in before)
    assert during and all(threads == [1] * len(before) for threads in during)
    assert after == before
