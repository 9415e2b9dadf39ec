"""Torch's intra-op threads during ``fit`` and ``predict``: as many as the work can use.

torch starts with one intra-op thread per core, and every operator, however
small, splits its work among them and waits at a barrier for all of them.
On the models of small tabular cohorts an operator takes microseconds, so
extra threads cannot pay; and when another process holds a core, every
barrier waits for a thread that has no core, which made fits 10-90x
slower than with one thread. ``benchmarks/threads.py`` measures both
sides on a 2-core machine: idle, a second thread saves about 40 % of a
step from a forward pass of about 50 MFLOP; with the other core busy, it
makes a step 1.2-2.5x slower at the sizes measured up to 1.6 GFLOP,
and about 100x slower for a small cohort's linear expert, whose operators
take microseconds. So a fit or a prediction uses one thread unless a batch's
forward pass reaches :data:`PARALLEL_STEP_FLOPS`, where the idle
machine's gain (about 2x) is worth the busy machine's loss, and then the
threads it may use.

An explicit choice is kept: a count set with ``torch.set_num_threads``
after sk-i2m2 was imported is used as it is, and limits set through
``OMP_NUM_THREADS``, ``threadpoolctl`` or a parallel engine's worker
(:func:`~sk_i2m2._parallel.cpu_share`) cap the count in every case. The
previous count comes back when the fit or prediction ends, error or not.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from ._parallel import cpu_share

__all__ = [
    "PARALLEL_STEP_FLOPS",
    "forward_flops",
    "step_flops",
    "remember_row_flops",
    "row_flops",
    "threads_for",
    "torch_threads",
]

#: Forward FLOPs of one batch from which more than one intra-op thread is used.
PARALLEL_STEP_FLOPS = 1e9

# torch's count when sk-i2m2 was imported: a different count later was set
# by the user (or by a library on the user's behalf).
_IMPORT_THREADS = torch.get_num_threads()


def forward_flops(module, batch):
    """Multiply-add FLOPs of ``module(**batch)`` in its linear, convolution and recurrent layers.

    Runs the forward pass once without gradients and counts, through
    forward hooks, what dominates a step: ``2 * in_features`` per output of
    a linear layer, ``2 * in_channels / groups * kernel size`` per output of
    a convolution, and twice the recurrent weights per time step of a
    GRU/LSTM/RNN. Other operators count 0. (torch's own
    ``FlopCounterMode`` counts more, but its first use imports
    ``torch._dynamo``, seconds that a small fit cannot afford.)
    """
    total = 0

    def count(layer, inputs, output):
        nonlocal total
        if isinstance(layer, nn.Linear):
            total += 2 * layer.in_features * output.numel()
        elif isinstance(layer, nn.modules.conv._ConvNd):
            per_output = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
            total += 2 * per_output * output.numel()
        else:  # nn.RNNBase: every weight once per time step of every sequence
            steps = inputs[0].numel() // layer.input_size
            weights = sum(p.numel() for name, p in layer.named_parameters() if "weight" in name)
            total += 2 * weights * steps

    layers = (nn.Linear, nn.modules.conv._ConvNd, nn.RNNBase)
    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, layers)]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(**batch)
    finally:
        module.train(was_training)
        for hook in hooks:
            hook.remove()
    return total


def row_flops(module, batch=None):
    """FLOPs of ``module``'s forward pass per row, from the rows of ``batch``.

    Counted once per module and kept on it (``batch`` may then be left
    out): counting runs a forward pass, which would cost as much as a
    small prediction. ``batch`` is a dict of tensors, or a function
    returning one, called only when the module has no count yet.
    """
    flops = getattr(module, "_sk_i2m2_row_flops", None)
    if flops is None:
        batch = batch() if callable(batch) else batch
        rows = len(next(iter(batch.values())))
        flops = forward_flops(module, batch) / max(rows, 1)
        remember_row_flops(module, flops)
    return flops


def remember_row_flops(module, flops):
    """Keep ``flops`` as ``module``'s count for :func:`row_flops` (e.g. the sum of its parts)."""
    module._sk_i2m2_row_flops = flops


def step_flops(module, rows, batch_size, device):
    """Forward FLOPs of ``module`` on a batch of ``batch_size`` rows like ``rows``, on ``device``.

    ``rows`` as for :func:`row_flops`. 0 on a GPU: there the host threads
    only feed the device, and one is enough.
    """
    if torch.device(device).type != "cpu":
        return 0.0
    return row_flops(module, rows) * batch_size


def threads_for(flops, current, cap):
    """Intra-op threads for batches whose forward pass costs ``flops``.

    ``current`` is torch's count before the fit or prediction began: the
    user's own count when they changed it since sk-i2m2 was imported, used
    as it is; otherwise one thread below :data:`PARALLEL_STEP_FLOPS` and
    torch's count above it. Never more than ``cap``.
    """
    if current == _IMPORT_THREADS and flops < PARALLEL_STEP_FLOPS:
        return 1
    return max(1, min(current, cap))


@contextlib.contextmanager
def torch_threads():
    """Run the block with torch's thread count restored afterwards, error or not.

    Yields a function ``use(flops)`` that sets the count for the rest of
    the block to :func:`threads_for` batches of ``flops``, judged against
    the count the block started with and capped by
    :func:`~sk_i2m2._parallel.cpu_share` (without its OpenMP limit, which
    that count already reflects). The starting count is put back unless
    something else changed it meanwhile (another fit in a thread of the
    same process: torch's count is global to the process).
    """
    previous = torch.get_num_threads()
    cap = cpu_share(openmp=False)
    chosen = [previous]

    def use(flops):
        n = threads_for(flops, previous, cap)
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
        chosen[0] = n

    try:
        yield use
    finally:
        if torch.get_num_threads() == chosen[0] != previous:
            torch.set_num_threads(previous)
