"""``torch.optim.LBFGS`` over one flat tensor of the parameters.

At every evaluation of its line search, ``torch.optim.LBFGS`` moves the
parameters to the trial point and back one tensor at a time
(``_add_grad``, ``_set_param``), and at every iteration it copies them one
tensor at a time (``_clone_param``). On the small models of a small
cohort's full-batch stages each of these loops costs more than the
arithmetic it does: with them, the optimizer's bookkeeping took 15-24 % of
a default fit (``benchmarks/fit_breakdown.py`` run before this class; 11-19 %
with it). :class:`FlatLBFGS` makes the parameters views of one flat tensor,
so that each move is one operation on it; the algorithm and its arithmetic
are torch's. The stage nets train with it wherever the fit's optimizer is
``torch.optim.LBFGS`` (:func:`full_batch_optimizer`), as they take AdamW's
fused kernel for AdamW: ``optimizer_`` still names ``torch.optim.LBFGS``.
"""

from __future__ import annotations

import torch

__all__ = ["FlatLBFGS", "full_batch_optimizer"]


class FlatLBFGS(torch.optim.LBFGS):
    """``torch.optim.LBFGS`` whose parameters are views of one flat tensor.

    It takes ``torch.optim.LBFGS``'s arguments and runs its algorithm: the
    same directions, line search and stopping tests on the same values.
    Creating it puts the parameters' values into one flat tensor and makes
    each parameter's ``data`` a view of it, so that moving or copying all
    parameters in a step is one tensor operation instead of one per
    parameter. The module keeps its ``Parameter`` objects, which still
    train, save and load as before.

    The parameters are left as they are, and moved one at a time as by
    ``torch.optim.LBFGS``, where they cannot share one tensor (parameters
    of several dtypes or devices, complex ones). A parameter whose data is
    replaced after the optimizer is created (``module.to``, assigning to
    ``.data``) is noticed at the next move: the parameters are then put
    into a new flat tensor, from their current values.
    """

    def __init__(self, params, **kwargs):
        super().__init__(params, **kwargs)
        self._flat, self._pointers = None, ()
        self._flatten()

    def _flatten(self):
        params = self._params
        first = params[0]
        if any(
            p.dtype != first.dtype or p.device != first.device or torch.is_complex(p)
            for p in params
        ):
            self._flat, self._pointers = None, ()
            return
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1) for p in params])
            offset = 0
            for p in params:
                numel = p.numel()
                p.data = flat[offset : offset + numel].view_as(p)
                offset += numel
        self._flat, self._pointers = flat, tuple(p.data_ptr() for p in params)

    def _flat_params(self):
        """The flat tensor the parameters are views of; ``None`` if they cannot be."""
        if self._flat is not None and any(
            p.data_ptr() != pointer for p, pointer in zip(self._params, self._pointers)
        ):
            self._flatten()
        return self._flat

    # torch.optim.LBFGS's helpers for moving the parameters, one operation
    # each. ``_clone_param`` returns the flat copy that ``step`` passes back
    # to ``_set_param`` unopened.

    def _add_grad(self, step_size, update):
        flat = self._flat_params()
        if flat is None:
            return super()._add_grad(step_size, update)
        flat.add_(update, alpha=step_size)

    def _clone_param(self):
        flat = self._flat_params()
        if flat is None:
            return super()._clone_param()
        return flat.clone()

    def _set_param(self, params_data):
        if not isinstance(params_data, torch.Tensor):
            return super()._set_param(params_data)
        self._flat_params().copy_(params_data)


def full_batch_optimizer(optimizer):
    """The class a full-batch stage net trains with for the fit's ``optimizer``.

    :class:`FlatLBFGS` for ``torch.optim.LBFGS`` (its iterates, in less
    time); any other class, such as a subclass of a user's, as it is.
    """
    return FlatLBFGS if optimizer is torch.optim.LBFGS else optimizer
