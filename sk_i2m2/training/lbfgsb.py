"""scipy's L-BFGS-B over torch tensors: small smooth problems solved in float64."""

from __future__ import annotations

import functools

import torch

__all__ = ["minimize_lbfgsb"]


def minimize_lbfgsb(objective, start, *, bounds=None, options=None):
    """Minimise ``objective(*tensors)`` from ``start`` with scipy's L-BFGS-B.

    scipy's Fortran L-BFGS-B (scikit-learn's ``lbfgs`` solver) keeps the
    quasi-Newton bookkeeping out of Python, where ``torch.optim.LBFGS``
    spends more on it than on the loss evaluations of problems this small,
    and it takes box constraints. The gradient is torch's autograd.

    Parameters
    ----------
    objective : callable
        Maps tensors shaped as ``start`` to a scalar tensor.
    start : sequence of tensor
        Starting values (float64), on any device.
    bounds : tuple of float or None, default=None
        ``(low, high)`` for every entry of every tensor; ``None``: unbounded.
    options : dict or None, default=None
        scipy's L-BFGS-B options (``maxiter``, ``gtol``, ``ftol``).

    Returns
    -------
    tensors : list of tensor
        The minimiser, shaped as ``start``.
    n_iter : int
        L-BFGS-B iterations.
    """
    from scipy.optimize import minimize

    shapes = [t.shape for t in start]
    sizes = [t.numel() for t in start]
    like = start[0]

    def unflatten(flat):
        tensor = torch.as_tensor(flat, dtype=torch.float64, device=like.device)
        return [part.view(shape) for part, shape in zip(tensor.split(sizes), shapes)]

    def value_and_grad(flat):
        tensors = [t.requires_grad_() for t in unflatten(flat)]
        loss = objective(*tensors)
        grads = torch.autograd.grad(loss, tensors)
        return float(loss.detach()), torch.cat([g.reshape(-1) for g in grads]).cpu().numpy()

    x0 = torch.cat([t.reshape(-1) for t in start]).cpu().numpy()
    # One BLAS thread: threads cannot pay on vectors this short, and on a
    # busy machine they wait for each other (tens of times slower).
    with _blas_libraries().limit(limits=1, user_api="blas"):
        result = minimize(
            value_and_grad,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=None if bounds is None else [bounds] * len(x0),
            options=options,
        )
    return [t.detach() for t in unflatten(result.x)], int(result.nit)


@functools.cache
def _blas_libraries():
    """threadpoolctl's controller of the BLAS libraries loaded (scipy's among them).

    Building one scans the process's shared libraries, which takes
    milliseconds; a fit runs several solves (each L2 strength, each
    calibration), so the scan runs once per process, after scipy's L-BFGS-B
    and its BLAS are imported.
    """
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()
