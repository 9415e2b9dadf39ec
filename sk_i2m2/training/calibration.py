"""Temperature scaling of the product of experts on held-out rows."""

from __future__ import annotations

import math

import torch

from ..nn.losses import ProductOfExpertsNLLLoss

__all__ = ["fit_temperature", "fit_held_out_temperature", "fit_gaussian_temperature"]

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
    logits = logits.detach().double().cpu()
    y = y.cpu()
    weight = weight.double().cpu() if weight is not None else None
    sample_weight = sample_weight.double().cpu() if sample_weight is not None else None
    loss_fn = criterion(weight)
    # Optimise log T: positive T without constraints; start at T = 1.
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_fn((logits / log_t.exp()).unsqueeze(0), y, sample_weight=sample_weight)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not torch.isfinite(torch.tensor(temperature)):
        return 1.0
    return min(max(temperature, _T_MIN), _T_MAX)


def fit_held_out_temperature(held_out, product_logits, options):
    """:func:`fit_temperature` on the validation rows of every model of a fit.

    ``held_out`` lists ``(expert_logits, available, y, sample_weight)`` per
    model (see :meth:`sk_i2m2.outcomes.Outcome.calibrate`);
    ``product_logits`` maps a model's expert logits to the product's logits
    that the temperature divides; ``options`` (the outcome's
    :class:`~sk_i2m2.outcomes.StageOptions`) gives the stage-2 criterion and
    its class weights.
    """
    logits = torch.cat([product_logits(logits) for logits, _, _, _ in held_out])
    targets = torch.cat([target for _, _, target, _ in held_out])
    weights = [weight for _, _, _, weight in held_out]
    return fit_temperature(
        logits,
        targets,
        options.criterion_kwargs["weight"],
        sample_weight=None if weights[0] is None else torch.cat(weights),
        criterion=options.criteria[1],
    )


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
