"""Cox experts: the partial likelihood, its two stage losses and the fold ensemble.

Each expert outputs one log-risk per sample. The product of the experts'
hazards ``h_0(t) * prod_k exp(r_k)`` is a proportional-hazards model whose
log-risk is the sum of the experts' log-risks, so the product of experts is
the sum, as for classification (:func:`combine_log_risk`). The target of
the losses is a float tensor of shape ``(batch, 2)``: time, then event
(1.0 for an event, 0.0 for a censored sample).
"""

from __future__ import annotations

import torch
from torch import nn

from .ensemble import MeanFoldEnsemble

__all__ = [
    "cox_nll_sums",
    "combine_log_risk",
    "ExpertsCoxLoss",
    "ProductOfExpertsCoxLoss",
    "CoxFoldEnsemble",
]


def combine_log_risk(expert_outputs, available=None):
    """Log-risk of the product of Cox experts: the sum of the experts' log-risks.

    Parameters
    ----------
    expert_outputs : tensor of shape (n_experts, n_samples, 1)
    available : bool tensor of shape (n_experts, n_samples) or None
        An expert that does not see a sample contributes 0 (its output may
        be anything, NaN included).

    Returns
    -------
    log_risk : tensor of shape (n_samples, 1)
    """
    if available is not None:
        expert_outputs = expert_outputs.masked_fill(~available.unsqueeze(-1), 0.0)
    return expert_outputs.sum(0)


def cox_nll_sums(log_risk, time, event, mask=None, sample_weight=None, ties="efron"):
    """Cox negative partial log-likelihood of each row of ``log_risk``, and its event weight.

    The risk set of a sample is every sample of the batch (that the row's
    ``mask`` keeps) whose time is not earlier. Ties among event times are
    handled by Breslow's or Efron's approximation; with weights, Efron's
    uses the mean weight of the tied events (as R's ``coxph`` does).

    Parameters
    ----------
    log_risk : tensor of shape (n_rows, n_samples)
        One log-risk per sample for each of ``n_rows`` models (experts).
    time, event : tensors of shape (n_samples,)
        Times and event indicators (1.0 event, 0.0 censored).
    mask : bool tensor of shape (n_rows, n_samples) or None
        Samples each row sees; the others are in no risk set.
    sample_weight : tensor of shape (n_samples,) or None
    ties : {"efron", "breslow"}, default="efron"

    Returns
    -------
    nll : tensor of shape (n_rows,)
        ``-sum_i w_i (r_i - log D_i)`` over the events ``i`` a row sees,
        ``D_i`` the (tie-corrected) weighted sum of ``exp(r)`` over the
        risk set.
    event_weight : tensor of shape (n_rows,)
        The weighted number of those events: ``nll / event_weight`` is the
        mean loss per event.
    """
    dtype = log_risk.dtype
    order = torch.argsort(time)
    time, event = time[order], event[order].to(dtype)
    log_risk = log_risk[:, order]
    weight = torch.ones_like(time, dtype=dtype) if sample_weight is None else sample_weight
    weight = weight[order].to(dtype).expand_as(log_risk)
    if mask is not None:
        mask = mask[:, order]
        weight = torch.where(mask, weight, 0.0)
        # A sample the row does not see must not reach the sums, even as NaN.
        log_risk = torch.where(mask, log_risk, 0.0)
    seen_events = (weight > 0).to(dtype) * event
    event_weight = weight * event
    # Shifted by each row's largest log-risk so that exp cannot overflow.
    shift = torch.where(weight > 0, log_risk, -torch.inf).amax(1, keepdim=True).detach()
    shift = torch.where(torch.isfinite(shift), shift, 0.0)
    risk = weight * torch.exp(log_risk - shift)

    _, group = torch.unique_consecutive(time, return_inverse=True)
    n_rows, n_groups = len(log_risk), int(group[-1]) + 1 if len(group) else 0

    def per_group(values):
        return values.new_zeros(n_rows, n_groups).index_add_(1, group, values)

    # Weighted sum of exp(r) over each time's risk set: all later groups.
    at_risk = per_group(risk).flip(1).cumsum(1).flip(1)[:, group]
    if ties == "efron":
        tied_risk = per_group(risk * event)[:, group]
        n_tied = per_group(seen_events)[:, group]
        # Rank of each event among its time's events (0 for the first).
        before = per_group(seen_events).cumsum(1) - per_group(seen_events)
        rank = seen_events.cumsum(1) - seen_events - before[:, group]
        fraction = rank / n_tied.clamp_min(1.0)
        denominator = at_risk - fraction * tied_risk
        # Each of the d tied terms carries the mean weight of the tied events.
        term_weight = (per_group(event_weight) / per_group(seen_events).clamp_min(1.0))[:, group]
        term_weight = term_weight * seen_events
    else:
        denominator = at_risk
        term_weight = event_weight
    log_denominator = torch.log(denominator.clamp_min(torch.finfo(dtype).tiny)) + shift
    terms = term_weight * log_denominator - event_weight * log_risk
    nll = torch.where(term_weight > 0, terms, 0.0).sum(1)
    return nll, event_weight.sum(1)


def _split_target(y):
    return y[:, 0], y[:, 1]


def _mean(total, weight):
    return total / weight.clamp_min(torch.finfo(weight.dtype).tiny)


class ExpertsCoxLoss(nn.Module):
    """Stage 1: the sum over experts of each expert's Cox loss, trained as if alone.

    An expert's loss is its negative partial log-likelihood on the batch
    per (weighted) event, over the samples it sees (``available``): its risk
    sets hold only those samples. The experts share no parameters, so each
    gets the gradient it would get trained alone.

    Parameters
    ----------
    ties : {"efron", "breslow"}, default="efron"
        Handling of tied event times (:func:`cox_nll_sums`).
    """

    def __init__(self, ties="efron"):
        super().__init__()
        self.ties = ties

    def per_expert_sums(self, expert_outputs, y, available=None, sample_weight=None):
        """Per expert: the negative partial log-likelihood and the weighted number of events."""
        time, event = _split_target(y)
        return cox_nll_sums(
            expert_outputs[..., 0], time, event, available, sample_weight, ties=self.ties
        )

    def per_expert(self, expert_outputs, y, available=None, sample_weight=None):
        """Each expert's loss per event; 0 for an expert that sees no event."""
        return _mean(*self.per_expert_sums(expert_outputs, y, available, sample_weight))

    def forward(self, expert_outputs, y, available=None, sample_weight=None):
        return self.per_expert(expert_outputs, y, available, sample_weight).sum()


class ProductOfExpertsCoxLoss(nn.Module):
    """Stage 2: the Cox loss of the product of experts, whose log-risk is their sum.

    An expert that cannot see a sample (``available``) adds 0 to its
    log-risk (:func:`combine_log_risk`); every sample is in the risk sets.

    Parameters
    ----------
    ties : {"efron", "breslow"}, default="efron"
    """

    def __init__(self, ties="efron"):
        super().__init__()
        self.ties = ties

    def forward(self, expert_outputs, y, available=None, sample_weight=None):
        time, event = _split_target(y)
        log_risk = combine_log_risk(expert_outputs, available)[..., 0].unsqueeze(0)
        return _mean(*cox_nll_sums(log_risk, time, event, None, sample_weight, self.ties))[0]


class CoxFoldEnsemble(MeanFoldEnsemble):
    """The I2M2 modules of K folds of Cox experts as one model.

    Each expert's log-risk is the mean of its K fold versions: its hazard
    is the geometric mean of theirs, so the ensemble is still a product of
    one hazard per expert. An abstaining expert outputs 0 in every fold.
    """
