"""Calibration of the product of experts on held-out rows: one temperature, or one weight per expert."""

from __future__ import annotations

import math

import torch

from ..nn.losses import ProductOfExpertsNLLLoss
from .lbfgsb import minimize_lbfgsb

__all__ = [
    "fit_temperature",
    "fit_expert_weights",
    "calibrate_product",
    "fit_gaussian_temperature",
]

# Bounds of a fitted temperature: below 1 the product is sharpened; more
# than 2x would mostly fit the noise of a small validation split.
_T_MIN, _T_MAX = 0.5, 20.0


def fit_temperature(
    logits, y, weight=None, max_iter=100, *, sample_weight=None, criterion=ProductOfExpertsNLLLoss
):
    """Temperature ``T`` minimising the NLL of ``softmax(logits / T)`` on held-out rows.

    A product of experts adds the experts' logits, so independent errors add
    up and its probabilities tend to be overconfident; one temperature
    (Guo et al., ICML 2017) corrects that without moving the arg-max, so
    predictions stay the same.

    Parameters
    ----------
    logits : tensor of shape (n_samples, n_outputs)
        Summed expert logits of held-out rows.
    y : tensor of shape (n_samples,) or (n_samples, n_labels)
        Class indices, or multilabel targets in [0, 1].
    weight : tensor or None
        Class weights of the training loss.
    max_iter : int, default=100
        L-BFGS iterations.
    sample_weight : tensor of shape (n_samples,) or None
        Weights of the held-out rows.
    criterion : class, default=ProductOfExpertsNLLLoss
        The stage-2 loss class (taking ``weight``), whose value on the
        scaled logits is minimised: the NLL of the softmax for classes,
        the per-label binary cross-entropy
        (:class:`~sk_i2m2.nn.losses.ProductOfExpertsBCELoss`) for
        multilabel targets, where ``T`` divides each label's log-odds.

    Returns
    -------
    temperature : float
        In [0.5, 20]; 1.0 when ``logits`` is empty. Below 1 the product is
        sharpened; more than 2x would mostly fit the noise of a small
        validation split (on separable rows the NLL falls without bound as
        ``T`` goes to 0).
    """
    if len(y) == 0:
        return 1.0
    bounds = (1.0 / _T_MAX, 1.0 / _T_MIN)
    scale = float(
        _fit_scales(logits.unsqueeze(0), y, weight, sample_weight, criterion, max_iter, bounds)
    )
    return 1.0 / scale if math.isfinite(scale) else 1.0


def fit_expert_weights(
    expert_terms,
    y,
    weight=None,
    max_iter=100,
    *,
    sample_weight=None,
    criterion=ProductOfExpertsNLLLoss,
    per_output=False,
):
    """The weights in [0, 1], one per expert, that minimise the loss of their weighted product.

    The normalised product ``prod_k q_k(y | x)^{w_k}`` is still a product of
    experts, each tempered by its own ``1 / w_k``. Where
    :func:`fit_temperature` tempers the whole product, these weights let
    held-out rows shrink an expert that does not help (a weak modality, an
    expert that overfit its training rows, an inter expert that counts again
    what the intra experts already say) instead of letting it pull the
    product down with full weight. A weight is at most 1: an expert is never
    made more confident than it was trained to be. The loss is convex in the
    weights, and they are fitted within these bounds together: where one
    expert's weight stops at 1, the others are the best ones given that.

    Parameters
    ----------
    expert_terms : tensor of shape (n_experts, n_samples, n_outputs)
        Each expert's log-probabilities (classes; a constant row where it
        cannot see the sample) or log-odds (multilabel; 0 where it cannot
        see the sample) on held-out rows.
    y, weight, max_iter, sample_weight, criterion
        As for :func:`fit_temperature`.
    per_output : bool, default=False
        Fit one weight per expert and output column (``n_outputs`` weights
        per expert) instead of one per expert. For multilabel targets,
        whose product is taken label by label, an expert then keeps its
        say on the labels it predicts and is shrunk on the others: a
        modality that carries one label is noise for the rest. The loss is
        then a sum of one such problem per label.

    Returns
    -------
    weights : list
        One weight (a float) per expert, or with ``per_output`` one list of
        ``n_outputs`` weights per expert; all 1.0 when ``y`` is empty or the
        fit fails.
    """
    ones = _unit_weights(len(expert_terms), expert_terms.shape[-1], per_output)
    if len(y) == 0:
        return ones.tolist()
    weights = _fit_scales(
        expert_terms, y, weight, sample_weight, criterion, max_iter, (0.0, 1.0), per_output
    )
    if not torch.isfinite(weights).all():
        return ones.tolist()
    return weights.tolist()


def calibrate_product(calibration, held_out, options, expert_terms, per_output=False):
    """The calibration attributes of a product of classifying experts.

    Parameters
    ----------
    calibration : {"auto", "experts", "temperature"} or None
        The estimator's parameter. ``"auto"`` fits expert weights when
        ``held_out`` comes from several cross-fitted models (every training
        row held out once), one temperature on a single validation split.
        ``"experts"`` fits one temperature instead for a single expert.
    held_out : list
        ``(expert_logits, available, y, sample_weight)`` per model (see
        :meth:`sk_i2m2.outcomes.Outcome.calibrate`).
    options : StageOptions
        The outcome's; gives the stage-2 criterion and its class weights.
    expert_terms : callable
        Maps a model's expert logits ``(n_experts, n_samples, n_outputs)``
        to the per-expert terms whose sum is the product's logits
        (log-probabilities for classes, log-odds for labels).
    per_output : bool, default=False
        Weigh each expert per output column (:func:`fit_expert_weights`):
        for labels, whose products are independent of each other.

    Returns
    -------
    attributes : dict
        ``temperature_``, ``expert_weights_`` (a list, one weight per
        expert, or with ``per_output`` one list of weights per expert; the
        fit multiplies each expert's output layer by its weights) and
        ``calibration_loss_``, the stage-2 loss of the calibrated product
        on the held-out rows (``None`` without held-out rows).
    """
    if not held_out:
        return {"temperature_": 1.0, "expert_weights_": [], "calibration_loss_": None}
    terms = torch.cat([expert_terms(logits) for logits, _, _, _ in held_out], dim=1)
    n_experts, _, n_outputs = terms.shape
    attributes = {
        "temperature_": 1.0,
        "expert_weights_": _unit_weights(n_experts, n_outputs, per_output).tolist(),
        "calibration_loss_": None,
    }
    if calibration == "auto":
        calibration = "experts" if len(held_out) > 1 else "temperature"
    targets, loss_options = _held_out_loss(held_out, options)
    if calibration == "experts" and n_experts > 1:
        attributes["expert_weights_"] = fit_expert_weights(
            terms, targets, **loss_options, per_output=per_output
        )
    elif calibration is not None:
        attributes["temperature_"] = fit_temperature(terms.sum(0), targets, **loss_options)
    scales = torch.tensor(attributes["expert_weights_"], dtype=torch.float64)
    scales = scales / attributes["temperature_"]
    attributes["calibration_loss_"] = _product_loss(terms, scales, targets, **loss_options)
    return attributes


def _product_loss(terms, scales, y, weight, sample_weight, criterion):
    """``criterion`` of the product ``sum_k scales[k] * terms[k]``, as a float.

    ``scales[k]`` is one factor or one per output column.
    """
    terms = terms.detach().double().cpu()
    weight = weight.double().cpu() if weight is not None else None
    sample_weight = sample_weight.double().cpu() if sample_weight is not None else None
    with torch.no_grad():
        loss = criterion(weight)(
            scales.view(len(terms), 1, -1) * terms, y.cpu(), sample_weight=sample_weight
        )
    return float(loss)


def _held_out_loss(held_out, options):
    """The held-out rows' targets, and the arguments of their stage-2 loss."""
    targets = torch.cat([target for _, _, target, _ in held_out])
    weights = [weight for _, _, _, weight in held_out]
    return targets, {
        "weight": options.criterion_kwargs["weight"],
        "sample_weight": None if weights[0] is None else torch.cat(weights),
        "criterion": options.criteria[1],
    }


def _fit_scales(terms, y, weight, sample_weight, criterion, max_iter, bounds, per_output=False):
    """Factors ``s`` within ``bounds`` minimising ``criterion`` of ``sum_k s_k * terms[k]``.

    A tensor of one factor per term ``k``, or with ``per_output`` one per
    term and output column (``terms`` is ``(n_terms, n_samples,
    n_outputs)``). The loss is convex in ``s`` (the terms enter linearly,
    as the features of a logistic regression), so the box-constrained
    L-BFGS-B finds the best factors within the bounds, all at once; it
    starts at ``s = 1``.
    """
    terms = terms.detach().double().cpu()
    y = y.cpu()
    weight = weight.double().cpu() if weight is not None else None
    sample_weight = sample_weight.double().cpu() if sample_weight is not None else None
    loss_fn = criterion(weight)

    def objective(scales):
        return loss_fn(scales.view(len(terms), 1, -1) * terms, y, sample_weight=sample_weight)

    start = _unit_weights(len(terms), terms.shape[-1], per_output)
    (scales,), _ = minimize_lbfgsb(objective, [start], bounds=bounds, options={"maxiter": max_iter})
    return scales


def _unit_weights(n_terms, n_outputs, per_output):
    """Factors of 1 (float64): one per term, or with ``per_output`` one per term and output."""
    return torch.ones((n_terms, n_outputs) if per_output else (n_terms,), dtype=torch.float64)


def fit_gaussian_temperature(mean, log_var, y, sample_weight=None):
    """Temperature ``T`` minimising the Gaussian NLL of ``y`` under ``N(mean, T * var)``.

    The regressor's counterpart of :func:`fit_temperature`: a product of
    Gaussian experts adds their precisions, so independent errors make it
    overconfident; scaling its variance by one ``T`` (its density's
    temperature) corrects that without moving the mean, so predictions
    stay the same. The minimiser has a closed form, the mean squared
    standardised residual ``mean((y - mean)^2 / var)``.

    Parameters
    ----------
    mean, log_var : tensors of shape (n_samples, n_targets)
        The product's means and log-variances on held-out rows.
    y : tensor of shape (n_samples, n_targets)
    sample_weight : tensor of shape (n_samples,) or None, default=None
        Weights of the rows: the residuals' weighted mean.

    Returns
    -------
    temperature : float
        In [0.5, 20], as :func:`fit_temperature`'s; 1.0 when ``y`` is empty.
    """
    if len(y) == 0:
        return 1.0
    residual = (y.double() - mean.double()) ** 2 * torch.exp(-log_var.double())
    if sample_weight is None:
        temperature = float(residual.mean())
    else:
        weight = sample_weight.double().view(-1, 1).expand_as(residual)
        temperature = float((residual * weight).sum() / weight.sum())
    if not math.isfinite(temperature):
        return 1.0
    return min(max(temperature, _T_MIN), _T_MAX)
