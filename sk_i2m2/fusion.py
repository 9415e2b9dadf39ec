"""Fusion specifications for the inter-modality expert.

The inter expert encodes every modality, fuses the features with one of
these, and classifies the fused vector with a one-hidden-layer MLP. The
hidden layer matters: a linear classifier on concatenated per-modality
features cannot represent interactions such as an XOR across modalities.
"""

from __future__ import annotations

import abc

from sklearn.base import BaseEstimator

from ._registry import REGISTRY
from .nn.fusion_modules import Concat, LowRankFusion

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


@REGISTRY.register("fusion", "concat")
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
        return Concat(in_features)


@REGISTRY.register("fusion", "lrtf")
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
        return LowRankFusion(in_features, self.rank, self.out_features)


def resolve_fusion(fusion, small_cohort=False, full_batch=False):
    """Turn ``fusion`` (a name or a :class:`FusionSpec`) into a spec.

    With ``small_cohort``, ``"concat"`` gets a narrow classifier
    (``ConcatFusion(hidden_size=16)``), which overfits less on tens to
    hundreds of samples. With ``full_batch`` (L-BFGS), a fusion given by
    name has no dropout: a line search needs a loss that is the same
    function at every evaluation, and the L2 penalty regularises instead.
    """
    if isinstance(fusion, FusionSpec):
        return fusion
    if fusion == "concat" and small_cohort:
        spec = ConcatFusion(hidden_size=16)
    else:
        spec = REGISTRY.create("fusion", fusion) if isinstance(fusion, str) else None
    if spec is not None:
        if full_batch:
            spec.set_params(dropout=0.0)
        return spec
    raise ValueError(
        f"Unknown fusion {fusion!r}; expected one of {REGISTRY.names('fusion')} or a "
        "FusionSpec such as LowRankTensorFusion(rank=8)."
    )
