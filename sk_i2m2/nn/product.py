"""The product of experts: the one place where expert outputs are combined.

Training (the stage-2 loss, the stage nets' predictions), prediction and
inspection all combine experts through these functions.
"""

from __future__ import annotations

import torch.nn.functional as F

__all__ = ["combine", "contributions", "product_proba"]


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
    return F.log_softmax(expert_logits.sum(0), dim=-1)


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
