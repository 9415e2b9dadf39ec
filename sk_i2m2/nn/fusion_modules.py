"""Torch modules built by the fusion specs of :mod:`sk_i2m2.fusion`.

Each maps a list of per-modality feature tensors to one fused tensor of
``out_features`` columns.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Concat", "LowRankFusion"]


class Concat(nn.Module):
    """Late fusion: the features side by side."""

    def __init__(self, in_features):
        super().__init__()
        self.out_features = sum(in_features)

    def forward(self, features):
        return torch.cat(features, dim=1)


class LowRankFusion(nn.Module):
    """Low-rank multimodal fusion (Liu et al., ACL 2018).

    Approximates the outer product of ``[z_k, 1]`` over modalities, followed
    by a linear map, with rank-``rank`` modality-specific factors: the
    fused vector is ``sum_r w_r * prod_k ([z_k, 1] @ W_k[r]) + b``. The
    factors are registered parameters, so they move with the module and
    train on any device.
    """

    def __init__(self, in_features, rank, out_features):
        super().__init__()
        self.factors = nn.ParameterList(
            nn.Parameter(torch.randn(rank, f + 1, out_features) / (f + 1) ** 0.5)
            for f in in_features
        )
        self.rank_weights = nn.Parameter(torch.full((rank,), 1.0 / rank))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.out_features = out_features

    def forward(self, features):
        fused = None
        for z, factor in zip(features, self.factors):
            z1 = torch.cat([z, z.new_ones(z.shape[0], 1)], dim=1)
            projected = torch.matmul(z1, factor)  # (rank, batch, out_features)
            fused = projected if fused is None else fused * projected
        return torch.einsum("r,rbo->bo", self.rank_weights, fused) + self.bias
