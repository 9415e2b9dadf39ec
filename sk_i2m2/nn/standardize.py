"""Input standardisation inside the model, from training-row statistics."""

from __future__ import annotations

import torch
from torch import nn

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
    are not copied whole and values at 1e6 keep their variance. A constant
    feature gets scale 1 (it is only centred). Returns CPU float32 tensors
    that broadcast against one sample.
    """
    sample_ndim = x.dim() - 1
    reduce = [0] + [1 + a for a in range(sample_ndim) if a not in feature_axes]
    total = sum(c.double().sum(reduce, keepdim=True) for c in x.split(chunk))
    count = x.numel() / total.numel()
    mean = total / count
    squares = sum(((c.double() - mean) ** 2).sum(reduce, keepdim=True) for c in x.split(chunk))
    scale = (squares / count).sqrt()
    scale[scale <= 1e-12 * mean.abs().clamp_min(1.0)] = 1.0
    return mean.squeeze(0).float().cpu(), scale.squeeze(0).float().cpu()
