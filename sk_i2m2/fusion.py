"""Fusion specifications for the inter-modality expert.

The inter expert encodes every modality, fuses the features with one of
these, and classifies the fused vector with a one-hidden-layer MLP. The
hidden layer matters: a linear classifier on concatenated per-modality
features cannot represent interactions such as an XOR across modalities.
"""

from __future__ import annotations

import abc

import torch
from sklearn.base import BaseEstimator
from torch import nn

__all__ = ["FusionSpec", "ConcatFusion", "LowRankTensorFusion", "resolve_fusion"]


class FusionSpec(BaseEstimator, metaclass=abc.ABCMeta):
    """Base class of fusion specifications.

    Parameters common to all fusions: ``hidden_size`` (width of the MLP
    that classifies the fused features) and ``dropout``.
    """

    @abc.abstractmethod
    def build(self, in_features):
        """Return a module mapping a list of feature tensors to one tensor.

        The module has an ``out_features`` attribute.
        """


class _Concat(nn.Module):
    def __init__(self, in_features):
        super().__init__()
        self.out_features = sum(in_features)

    def forward(self, features):
        return torch.cat(features, dim=1)


class ConcatFusion(FusionSpec):
    """Late fusion: concatenate the modalities' features (``fusion="concat"``).

    Parameters
    ----------
    hidden_size : int, default=64
        Width of the hidden layer of the classifier on the fused features.
    dropout : float, default=0.1
        Dropout before the classifier's output layer.
    """

    def __init__(self, hidden_size=64, dropout=0.1):
        self.hidden_size = hidden_size
        self.dropout = dropout

    def build(self, in_features):
        return _Concat(in_features)


class _LowRankFusion(nn.Module):
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


class LowRankTensorFusion(FusionSpec):
    """Low-rank tensor fusion, LRTF (``fusion="lrtf"``).

    Models multiplicative interactions between modalities through
    rank-``rank`` factors of the full tensor-fusion weight (Liu et al.,
    "Efficient Low-rank Multimodal Fusion with Modality-Specific Factors",
    ACL 2018).

    Parameters
    ----------
    rank : int, default=4
        Rank of the factorisation.
    out_features : int, default=32
        Size of the fused vector.
    hidden_size : int, default=64
        Width of the hidden layer of the classifier on the fused features.
    dropout : float, default=0.1
        Dropout before the classifier's output layer.
    """

    def __init__(self, rank=4, out_features=32, hidden_size=64, dropout=0.1):
        self.rank = rank
        self.out_features = out_features
        self.hidden_size = hidden_size
        self.dropout = dropout

    def build(self, in_features):
        return _LowRankFusion(in_features, self.rank, self.out_features)


_FUSIONS = {"concat": ConcatFusion, "lrtf": LowRankTensorFusion}


def resolve_fusion(fusion):
    """Turn ``fusion`` (a name or a :class:`FusionSpec`) into a spec."""
    if isinstance(fusion, FusionSpec):
        return fusion
    if isinstance(fusion, str) and fusion in _FUSIONS:
        return _FUSIONS[fusion]()
    raise ValueError(
        f"Unknown fusion {fusion!r}; expected one of {sorted(_FUSIONS)} or a "
        "FusionSpec such as LowRankTensorFusion(rank=8)."
    )
