"""Torch modules built by the encoder specs of :mod:`sk_i2m2.encoders`.

Each maps a batch of one modality, ``(batch, *sample_shape)``, to features
``(batch, out_features)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP", "ConvNet", "GRUNet", "Flatten"]


class MLP(nn.Module):
    """Linear -> ReLU (-> Dropout) blocks; ``out_features`` is the last width."""

    def __init__(self, in_features, hidden_sizes, dropout):
        super().__init__()
        layers, width = [], in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        self.net = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x):
        return self.net(x)


class ConvNet(nn.Module):
    """LeNet-style stack: a 5x5 conv block, then 3x3 conv blocks.

    Each block is conv -> BatchNorm -> ReLU -> max-pool(2); the first conv
    moves by ``first_stride`` (and is wider than 5 when that is above 4).
    Pooling stops once the smallest spatial side would drop below 2, so
    inputs from 8x8 (or 8x8x8) up work. Features are an adaptive average
    pool to ``pool_size`` per spatial axis, flattened.
    """

    def __init__(self, ndim, in_channels, spatial, channels, pool_size, dropout, first_stride=1):
        super().__init__()
        conv = nn.Conv2d if ndim == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d
        pool = nn.MaxPool2d if ndim == 2 else nn.MaxPool3d
        adaptive = FeaturePool2d if ndim == 2 else FeaturePool3d
        layers, width, side = [], in_channels, min(spatial)
        for i, out in enumerate(channels):
            # A first kernel wider than its stride, so that it reads every pixel.
            kernel, stride = (max(5, first_stride + 1), first_stride) if i == 0 else (3, 1)
            layers += [
                conv(width, out, kernel, stride=stride, padding=kernel // 2, bias=False),
                norm(out),
                nn.ReLU(inplace=True),
            ]
            side = (side - 1) // stride + 1
            if side >= 4:
                layers.append(pool(2))
                side //= 2
            width = out
        layers.append(adaptive(pool_size))
        layers.append(nn.Flatten())
        if dropout:
            layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)
        self.ndim = ndim
        self.add_channel_axis = False
        self.out_features = width * pool_size**ndim

    def forward(self, x):
        if self.add_channel_axis:
            x = x.unsqueeze(1)
        return self.net(x)


class _PassThroughAtSize:
    """An adaptive average pool that returns an input already at its output size as it is.

    On small images (8x8 after two conv blocks is 2x2) the pool has nothing
    to average, yet torch still runs a forward and a backward kernel for
    it: 7-10 % of a conv expert's training step on 64 rows of 8x8 images
    (``python -m benchmarks.step_kernels``).
    """

    def forward(self, x):
        if x.shape[2:] == (self.output_size,) * (x.dim() - 2):
            return x
        return super().forward(x)


class FeaturePool2d(_PassThroughAtSize, nn.AdaptiveAvgPool2d):
    """:class:`torch.nn.AdaptiveAvgPool2d` to an ``int`` side, a no-op at that side."""


class FeaturePool3d(_PassThroughAtSize, nn.AdaptiveAvgPool3d):
    """:class:`torch.nn.AdaptiveAvgPool3d` to an ``int`` side, a no-op at that side."""


class GRUNet(nn.Module):
    """GRU whose features are the last layer's final state (both directions)."""

    def __init__(self, in_features, hidden_size, num_layers, bidirectional, dropout):
        super().__init__()
        self.gru = nn.GRU(
            in_features,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.out_features = hidden_size * (2 if bidirectional else 1)

    def forward(self, x):
        _, h = self.gru(x)
        n_dirs = 2 if self.gru.bidirectional else 1
        return torch.cat(list(h[-n_dirs:]), dim=1)


class Flatten(nn.Module):
    """Wraps a user module so that its output is flattened to ``(batch, features)``."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x).flatten(1)
