"""The two training objectives of I2M2: class labels, multilabel targets, Gaussian experts.

Every criterion takes ``forward(expert_logits, y, available=None,
sample_weight=None)``: ``expert_logits`` of shape ``(n_experts, batch,
n_outputs)``, ``available`` the ``(n_experts, batch)`` mask of the experts
that see each sample, ``sample_weight`` a float tensor of shape
``(batch,)`` or ``None``. A batch's loss is the weighted mean of its sample
losses, ``sum(w * loss) / sum(w)``: rescaling all weights changes nothing,
and a sample of weight 0 counts as if it were not in the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .product import class_nll, combine_gaussian, split_gaussian

__all__ = [
    "ExpertsNLLLoss",
    "ProductOfExpertsNLLLoss",
    "ExpertsBCELoss",
    "ProductOfExpertsBCELoss",
    "label_losses",
    "ExpertsGaussianNLLLoss",
    "ProductOfGaussiansNLLLoss",
    "gaussian_nll",
]


def _weighted_mean(losses, weights):
    """``sum(w * loss) / sum(w)`` over the last axis; a plain mean without weights."""
    if weights is None:
        return losses.mean(-1)
    return (losses * weights).sum(-1) / weights.sum(-1).clamp_min(torch.finfo(weights.dtype).tiny)


def label_losses(logits, y, weight=None):
    """Per-sample multilabel loss: the mean over labels of the binary cross-entropies.

    Parameters
    ----------
    logits : tensor of shape (..., batch, n_labels)
        Log-odds of each label.
    y : float tensor of shape (batch, n_labels)
        Targets in [0, 1]: 0/1 indicators or soft targets.
    weight : tensor of shape (2, n_labels) or None
        Per label, the weight of its negatives (row 0) and of its positives
        (row 1); a soft target ``t`` is weighted ``t * w1 + (1 - t) * w0``.

    Returns
    -------
    losses : tensor of shape (..., batch)
    """
    target = y.to(logits.dtype).expand_as(logits)
    losses = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if weight is not None:
        losses = losses * (target * weight[1] + (1 - target) * weight[0])
    return losses.mean(-1)


class ExpertsNLLLoss(nn.Module):
    """Stage 1: the sum over experts of each expert's own cross-entropy.

    Experts share no parameters, so each receives exactly the gradient it
    would get if trained alone on the same batches; training them in one
    step only saves launches and Python overhead. Each expert's loss is the
    (class- and sample-weighted) mean over the samples it sees
    (``available``).

    Parameters
    ----------
    weight : tensor of shape (n_classes,) or None
        Class weights.
    """

    def __init__(self, weight=None):
        super().__init__()
        self.register_buffer("weight", weight)

    def expert_losses(self, expert_logits, y):
        """Unweighted sample losses of each expert, ``(n_experts, batch)``."""
        return class_nll(expert_logits, y)

    def sample_weights(self, y, sample_weight=None):
        """Weight of each sample in the mean: class weight times sample weight, or None."""
        weights = self.weight[y] if self.weight is not None else None
        if sample_weight is None:
            return weights
        return sample_weight if weights is None else weights * sample_weight

    def per_expert_sums(self, expert_logits, y, available=None, sample_weight=None):
        """Per expert: the sum of weighted sample losses and the sum of weights."""
        losses = self.expert_losses(expert_logits, y)
        n_experts, batch = losses.shape
        weights = self.sample_weights(y, sample_weight)
        if weights is None and available is None:  # the common case: plain means
            return losses.sum(1), losses.new_full((n_experts,), batch)
        if weights is None:
            weights = available.to(losses.dtype)
        else:
            weights = weights.to(losses.dtype).expand(n_experts, batch)
            if available is not None:
                weights = weights * available
        return (losses * weights).sum(1), weights.sum(1)

    def per_expert(self, expert_logits, y, available=None, sample_weight=None):
        """Each expert's mean loss; 0 for an expert that sees no sample."""
        total, weight = self.per_expert_sums(expert_logits, y, available, sample_weight)
        return total / weight.clamp_min(torch.finfo(weight.dtype).tiny)

    def forward(self, expert_logits, y, available=None, sample_weight=None):
        return self.per_expert(expert_logits, y, available, sample_weight).sum()


class ProductOfExpertsNLLLoss(nn.Module):
    """Stage 2: cross-entropy of the product of experts (the I2M2 objective).

    ``available`` is accepted for symmetry with :class:`ExpertsNLLLoss` and
    not needed: an expert that cannot see a sample already gives it logits
    0, and every sample has at least one expert.

    Parameters
    ----------
    weight : tensor of shape (n_classes,) or None
        Class weights.
    """

    def __init__(self, weight=None):
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, expert_logits, y, available=None, sample_weight=None):
        losses = class_nll(expert_logits.sum(0), y)
        weights = None if self.weight is None else self.weight[y]
        if sample_weight is not None:
            weights = sample_weight if weights is None else weights * sample_weight
        return _weighted_mean(losses, None if weights is None else weights.to(losses.dtype))


class ExpertsBCELoss(ExpertsNLLLoss):
    """Stage 1 for multilabel targets: each expert's own per-label binary cross-entropy.

    Each expert gives one logit per label, a Bernoulli expert for each
    label; its sample loss is :func:`label_losses`.

    Parameters
    ----------
    weight : tensor of shape (2, n_labels) or None
        Per-label weights of negatives and positives (see :func:`label_losses`).
    """

    def expert_losses(self, expert_logits, y):
        return label_losses(expert_logits, y, self.weight)

    def sample_weights(self, y, sample_weight=None):
        # The class weights are per label entry, inside expert_losses.
        return sample_weight


class ProductOfExpertsBCELoss(ProductOfExpertsNLLLoss):
    """Stage 2 for multilabel targets: binary cross-entropy of the product per label.

    The product of Bernoulli experts has log-odds equal to the sum of the
    experts' log-odds (:func:`~sk_i2m2.nn.product.combine_labels`).

    Parameters
    ----------
    weight : tensor of shape (2, n_labels) or None
        Per-label weights of negatives and positives (see :func:`label_losses`).
    """

    def forward(self, expert_logits, y, available=None, sample_weight=None):
        losses = label_losses(expert_logits.sum(0), y, self.weight)
        weights = sample_weight.to(losses.dtype) if sample_weight is not None else None
        return _weighted_mean(losses, weights)


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
