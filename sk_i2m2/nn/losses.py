"""The two training objectives of I2M2."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ExpertsNLLLoss", "ProductOfExpertsNLLLoss"]


class ExpertsNLLLoss(nn.Module):
    """Stage 1: the sum over experts of each expert's own cross-entropy.

    Experts share no parameters, so each receives exactly the gradient it
    would get if trained alone on the same batches; training them in one
    step only saves launches and Python overhead. Each expert's loss is the
    (class-weighted) mean over the samples it sees (``available``).
    """

    def __init__(self, weight=None):
        super().__init__()
        self.register_buffer("weight", weight)

    def per_expert_sums(self, expert_logits, y, available=None):
        """Per expert: the sum of weighted sample losses and the sum of weights."""
        n_experts, batch, n_classes = expert_logits.shape
        losses = F.cross_entropy(
            expert_logits.reshape(-1, n_classes),
            y.repeat(n_experts),
            reduction="none",
        ).view(n_experts, batch)
        if self.weight is None and available is None:  # the common case: plain means
            return losses.sum(1), losses.new_full((n_experts,), batch)
        if self.weight is None:
            weights = available.to(losses.dtype)
        else:
            weights = self.weight[y].expand(n_experts, batch)
            if available is not None:
                weights = weights * available
        return (losses * weights).sum(1), weights.sum(1)

    def per_expert(self, expert_logits, y, available=None):
        """Each expert's mean loss; 0 for an expert that sees no sample."""
        total, weight = self.per_expert_sums(expert_logits, y, available)
        return total / weight.clamp_min(torch.finfo(weight.dtype).tiny)

    def forward(self, expert_logits, y, available=None):
        return self.per_expert(expert_logits, y, available).sum()


class ProductOfExpertsNLLLoss(nn.Module):
    """Stage 2: cross-entropy of the product of experts (the I2M2 objective).

    ``available`` is accepted for symmetry with :class:`ExpertsNLLLoss` and
    not needed: an expert that cannot see a sample already gives it logits
    0, and every sample has at least one expert.
    """

    def __init__(self, weight=None):
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, expert_logits, y, available=None):
        return F.cross_entropy(expert_logits.sum(0), y, weight=self.weight)
