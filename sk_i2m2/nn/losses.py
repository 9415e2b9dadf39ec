"""The two training objectives of I2M2, for categorical and Gaussian experts."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .product import combine_gaussian, split_gaussian

__all__ = [
    "ExpertsNLLLoss",
    "ProductOfExpertsNLLLoss",
    "ExpertsGaussianNLLLoss",
    "ProductOfGaussiansNLLLoss",
    "gaussian_nll",
]


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


def gaussian_nll(outputs, y):
    """Negative log-density of ``y`` under Gaussians, summed over the targets.

    Parameters
    ----------
    outputs : tensor of shape (..., batch, 2 * n_targets)
        Means and log-variances (:func:`~sk_i2m2.nn.product.split_gaussian`).
    y : tensor of shape (batch, n_targets)

    Returns
    -------
    nll : tensor of shape (..., batch)
    """
    mean, log_var = split_gaussian(outputs)
    return 0.5 * (math.log(2 * math.pi) + log_var + (y - mean) ** 2 * torch.exp(-log_var)).sum(-1)


def _weighted_mean(losses, sample_weight):
    if sample_weight is None:
        return losses.mean()
    return (losses * sample_weight).sum() / sample_weight.sum().clamp_min(
        torch.finfo(losses.dtype).tiny
    )


class ExpertsGaussianNLLLoss(nn.Module):
    """Stage 1 of the regressor: the sum over experts of each one's Gaussian NLL.

    Each expert predicts a mean and a log-variance per target; its loss is
    the mean negative log-likelihood of the targets over the samples it
    sees (``available``), weighted by ``sample_weight`` when given. As for
    :class:`ExpertsNLLLoss`, the experts share no parameters, so each gets
    the gradient it would get trained alone.
    """

    def per_expert_sums(self, expert_outputs, y, available=None, sample_weight=None):
        """Per expert: the sum of weighted sample losses and the sum of weights."""
        losses = gaussian_nll(expert_outputs, y)
        n_experts, batch = losses.shape
        if available is None and sample_weight is None:
            return losses.sum(1), losses.new_full((n_experts,), batch)
        weights = losses.new_ones(n_experts, batch)
        if available is not None:
            weights = weights * available
        if sample_weight is not None:
            weights = weights * sample_weight
        # ``where``: an abstaining expert's loss is not multiplied out, so
        # that a non-finite value there cannot reach the sum.
        return torch.where(weights > 0, losses * weights, 0.0).sum(1), weights.sum(1)

    def per_expert(self, expert_outputs, y, available=None, sample_weight=None):
        """Each expert's mean loss; 0 for an expert that sees no sample."""
        total, weight = self.per_expert_sums(expert_outputs, y, available, sample_weight)
        return total / weight.clamp_min(torch.finfo(weight.dtype).tiny)

    def forward(self, expert_outputs, y, available=None, sample_weight=None):
        return self.per_expert(expert_outputs, y, available, sample_weight).sum()


class ProductOfGaussiansNLLLoss(nn.Module):
    """Stage 2 of the regressor: the Gaussian NLL of the product of experts.

    The product is :func:`~sk_i2m2.nn.product.combine_gaussian`: an expert
    that cannot see a sample (``available``) contributes precision 0.
    """

    def forward(self, expert_outputs, y, available=None, sample_weight=None):
        losses = gaussian_nll(combine_gaussian(expert_outputs, available), y)
        return _weighted_mean(losses, sample_weight)
