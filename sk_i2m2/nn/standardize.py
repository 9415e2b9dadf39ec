"""Input standardisation inside the model, from training-row statistics."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .._lazy import LazyRows

__all__ = ["Standardize", "input_moments"]


class Standardize(nn.Module):
    """Fixed affine input scaling ``(x - mean) / scale`` held as buffers.

    Buffers travel with the module (device moves, ``state_dict``), so
    prediction applies exactly the training statistics. ``mean`` and
    ``scale`` broadcast against one sample (e.g. ``(C, 1, 1)`` per channel
    of an image, ``(F,)`` per feature of a vector or sequence).
    """

    def __init__(self, mean, scale):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x):
        return (x - self.mean) / self.scale


def input_moments(x, feature_axes, chunk=4096):
    """Mean and scale of ``x`` over samples, per entry of ``feature_axes``.

    ``feature_axes`` are per-sample axes that keep their own statistics;
    samples and every other axis are averaged over. Two passes in float64
    over chunks of rows, on the device where ``x`` lives, so large image sets
    are not copied whole and values at 1e6 keep their variance. ``x`` may be
    a :class:`~sk_i2m2._lazy.LazyRows`: sparse rows are summed on their
    stored values (never densified), other lazy rows are read in chunks. A
    constant feature gets scale 1 (it is only centred). Returns CPU float32
    tensors that broadcast against one sample.
    """
    if isinstance(x, LazyRows):
        sparse = x.sparse()
        if sparse is not None and tuple(feature_axes) == (0,):
            return _sparse_moments(sparse)

        def chunks():
            return x.chunks()

    else:

        def chunks():
            return x.split(chunk)

    sample_ndim = len(x.shape) - 1
    reduce = [0] + [1 + a for a in range(sample_ndim) if a not in feature_axes]
    total = sum(c.double().sum(reduce, keepdim=True) for c in chunks())
    count = math.prod(x.shape) / total.numel()
    mean = total / count
    squares = sum(((c.double() - mean) ** 2).sum(reduce, keepdim=True) for c in chunks())
    return _finish(mean.squeeze(0), (squares / count).sqrt().squeeze(0))


def _sparse_moments(csr):
    """:func:`input_moments` per column of a scipy CSR matrix, from its stored values.

    The same two-pass sums: an implicit zero of column ``j`` adds
    ``mean_j ** 2`` to its squares.
    """
    n, n_features = csr.shape
    columns, values = csr.indices, csr.data.astype(np.float64)
    mean = np.bincount(columns, weights=values, minlength=n_features) / n
    stored = np.bincount(columns, minlength=n_features)
    squares = np.bincount(columns, weights=(values - mean[columns]) ** 2, minlength=n_features)
    squares += (n - stored) * mean**2
    return _finish(torch.from_numpy(mean), torch.from_numpy(np.sqrt(squares / n)))


def _finish(mean, scale):
    scale[scale <= 1e-12 * mean.abs().clamp_min(1.0)] = 1.0
    return mean.float().cpu(), scale.float().cpu()
