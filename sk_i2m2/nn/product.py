"""The product of experts: the one place where expert outputs are combined.

Training (the stage-2 loss, the stage nets' predictions), prediction and
inspection all combine experts through these functions: :func:`combine`
for class labels (one categorical expert per modality), :func:`combine_labels`
for multilabel targets (one Bernoulli expert per modality and label),
:func:`combine_gaussian` for the regressor's Gaussian experts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "class_log_proba",
    "class_nll",
    "combine",
    "combine_gaussian",
    "combine_labels",
    "contributions",
    "gaussian_fold_mean",
    "product_label_proba",
    "product_mean",
    "product_proba",
    "split_gaussian",
]


#: :func:`class_log_proba` lays out the classes first on the CPU for fewer
#: classes than this, on logits of at least :data:`CLASSES_FIRST_ENTRIES` entries.
FEW_CLASSES = 16
CLASSES_FIRST_ENTRIES = 512


def class_log_proba(logits):
    """``log_softmax`` over the classes, the last axis of ``logits``.

    torch's CPU kernel vectorises a softmax along its own axis, which is
    slow when that axis is short: with fewer than :data:`FEW_CLASSES`
    classes the softmax runs over the classes laid out first, across the
    rows, once there are enough of them (:data:`CLASSES_FIRST_ENTRIES`;
    below, the transposes cost more than they save). The forward and
    backward pass of the experts' cross-entropy then take a third of the
    time in a small cohort's linear solve (10 copies of 210 rows, 10
    classes, float64) and less than half on a batch of 128 rows of 10
    classes (``python -m benchmarks.step_kernels``); the values are the
    same to rounding. A graph being compiled or exported takes the plain
    softmax: the size test would make the batch size a constant of it.
    """
    classes_first = (
        logits.device.type == "cpu"
        and logits.shape[-1] < FEW_CLASSES
        and not torch.compiler.is_compiling()
        and logits.numel() >= CLASSES_FIRST_ENTRIES
    )
    if classes_first:
        return logits.transpose(-1, -2).log_softmax(-2).transpose(-1, -2)
    return F.log_softmax(logits, dim=-1)


def class_nll(logits, y):
    """Each row's cross-entropy: ``-class_log_proba(logits)`` at class ``y``.

    ``logits`` of shape ``(..., n_samples, n_classes)``; ``y`` integer
    classes of shape ``(n_samples,)``, shared by the leading axes.
    """
    log_proba = class_log_proba(logits)
    return -log_proba.gather(-1, y.expand(log_proba.shape[:-1]).unsqueeze(-1)).squeeze(-1)


def combine(expert_logits, available=None):
    """Normalised product of experts: ``log_softmax`` of the summed logits.

    Each expert's normaliser is a constant in ``y`` and cancels, so the sum
    of raw logits (or of log-probabilities) followed by one ``log_softmax``
    is exactly ``log(prod_k q_k(y|x) / Z)``.

    Parameters
    ----------
    expert_logits : tensor of shape (n_experts, n_samples, n_classes)
        Logits or log-probabilities of each expert.
    available : bool tensor of shape (n_experts, n_samples) or None
        Which expert sees which sample; an expert that does not see a
        sample is left out of its product (its entries may be anything,
        NaN included). ``None``: every expert sees every sample.

    Returns
    -------
    log_proba : tensor of shape (n_samples, n_classes)
    """
    if available is not None:
        expert_logits = expert_logits.masked_fill(~available.unsqueeze(-1), 0.0)
    return class_log_proba(expert_logits.sum(0))


def combine_labels(expert_logits, available=None):
    """Product of Bernoulli experts per label: ``logsigmoid`` of the summed log-odds.

    For multilabel targets each expert gives one logit per label, ``q_k(y_l
    = 1 | x) = sigmoid(z_kl)``. The product ``prod_k q_k(y_l | x)``,
    normalised over ``y_l`` in {0, 1}, has odds ``prod_k exp(z_kl)``, so it
    is ``sigmoid(sum_k z_kl)``: the same sum of logits as :func:`combine`,
    normalised per label instead of across classes.

    Parameters
    ----------
    expert_logits : tensor of shape (n_experts, n_samples, n_labels)
        Log-odds of each expert.
    available : bool tensor of shape (n_experts, n_samples) or None
        As for :func:`combine`.

    Returns
    -------
    log_proba : tensor of shape (n_samples, n_labels)
        Log-probability that each label is positive.
    """
    if available is not None:
        expert_logits = expert_logits.masked_fill(~available.unsqueeze(-1), 0.0)
    return F.logsigmoid(expert_logits.sum(0))


def product_label_proba(expert_logits):
    """Positive-label probabilities of the product of Bernoulli experts (``predict_nonlinearity``)."""
    return combine_labels(expert_logits).exp()


def product_proba(expert_logits):
    """Class probabilities of the product of experts (a skorch ``predict_nonlinearity``)."""
    return combine(expert_logits).exp()


def contributions(expert_logits):
    """Each expert's term in the log-probability of the predicted class.

    The product adds the experts' log-probabilities, so a prediction
    decomposes exactly: expert ``k``'s term for sample ``i`` with predicted
    class ``c`` is ``log q_k(c | x_i)`` minus its mean over the classes (0
    for an abstaining expert, whose logits are 0). The terms of a sample sum
    to ``log p(c | x_i)`` minus its mean over the classes.

    Returns
    -------
    terms : tensor of shape (n_experts, n_samples)
    predicted : long tensor of shape (n_samples,)
    """
    predicted = combine(expert_logits).argmax(-1)
    # Centring removes each expert's normaliser, so raw logits will do.
    centred = expert_logits - expert_logits.mean(-1, keepdim=True)
    index = predicted.view(1, -1, 1).expand(len(expert_logits), -1, 1)
    return centred.gather(2, index).squeeze(2), predicted


def split_gaussian(expert_outputs):
    """Means and log-variances of Gaussian experts' outputs.

    A Gaussian expert of ``n_targets`` outputs has ``2 * n_targets``
    outputs: the means, then the log-variances, one independent Gaussian per
    target.

    Returns
    -------
    mean, log_var : tensors of shape ``(..., n_targets)``
    """
    return expert_outputs.chunk(2, dim=-1)


def combine_gaussian(expert_outputs, available=None):
    """Normalised product of Gaussian experts, per target.

    The product of Gaussian densities ``N(y; mu_k, var_k)`` is, up to a
    constant, the Gaussian whose precision is the sum of the experts'
    precisions, ``1 / var = sum_k 1 / var_k``, and whose mean is their
    precision-weighted mean, ``mu = var * sum_k mu_k / var_k``.

    Parameters
    ----------
    expert_outputs : tensor of shape (n_experts, n_samples, 2 * n_targets)
        Each expert's means and log-variances (:func:`split_gaussian`).
    available : bool tensor of shape (n_experts, n_samples) or None
        Which expert sees which sample; an expert that does not see a
        sample contributes precision 0 (its outputs may be anything, NaN
        included). ``None``: every expert sees every sample. Every sample
        needs one expert.

    Returns
    -------
    outputs : tensor of shape (n_samples, 2 * n_targets)
        Mean and log-variance of the product, laid out like one expert's.
    """
    mean, log_var = split_gaussian(expert_outputs)
    log_precision = -log_var
    if available is not None:
        hidden = ~available.unsqueeze(-1)
        mean = mean.masked_fill(hidden, 0.0)
        log_precision = log_precision.masked_fill(hidden, -math.inf)
    # In log space: no overflow of exp(-log_var) for confident experts.
    log_total = torch.logsumexp(log_precision, dim=0)
    weights = torch.exp(log_precision - log_total)
    return torch.cat([(weights * mean).sum(0), -log_total], dim=-1)


def gaussian_fold_mean(fold_outputs):
    """Each Gaussian expert's geometric mean over cross-fitting folds.

    The normalised geometric mean of ``K`` Gaussians is their product with
    every precision divided by ``K``: the mean precision and the
    precision-weighted mean, again a Gaussian, so an ensemble of folds is
    still one product of experts.

    Parameters
    ----------
    fold_outputs : tensor of shape (n_folds, n_experts, n_samples, 2 * n_targets)

    Returns
    -------
    outputs : tensor of shape (n_experts, n_samples, 2 * n_targets)
    """
    n_folds = len(fold_outputs)
    mean, log_var = split_gaussian(fold_outputs)
    tempered = torch.cat([mean, log_var + math.log(n_folds)], dim=-1)
    return combine_gaussian(tempered.flatten(1, 2)).view(fold_outputs.shape[1:])


def product_mean(expert_outputs):
    """Mean of the product of Gaussian experts (a skorch ``predict_nonlinearity``).

    The regressor's stage net combines the experts in its
    ``evaluation_step`` (where it knows which experts see each sample), so
    this receives the product's outputs and keeps the means.
    """
    return split_gaussian(expert_outputs)[0]
