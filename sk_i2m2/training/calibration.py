"""Temperature scaling of the product of experts on held-out rows."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["fit_temperature", "fit_gaussian_temperature"]

# Bounds of a fitted temperature: below 1 the product is sharpened; more
# than 2x would mostly fit the noise of a small validation split.
_T_MIN, _T_MAX = 0.5, 20.0


def fit_temperature(logits, y, weight=None, max_iter=100):
    """Temperature ``T`` minimising the NLL of ``softmax(logits / T)`` on held-out rows.

    A product of experts adds the experts' logits, so independent errors add
    up and its probabilities tend to be overconfident; one temperature
    (Guo et al., ICML 2017) corrects that without moving the arg-max, so
    predictions stay the same.

    Parameters
    ----------
    logits : tensor of shape (n_samples, n_classes)
        Summed expert logits of held-out rows.
    y : long tensor of shape (n_samples,)
    weight : tensor of shape (n_classes,) or None
        Class weights of the training loss.
    max_iter : int, default=100
        L-BFGS iterations.

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
    # Optimise log T: positive T without constraints; start at T = 1.
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), y, weight=weight)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.detach().exp())
    if not torch.isfinite(torch.tensor(temperature)):
        return 1.0
    return min(max(temperature, _T_MIN), _T_MAX)


def fit_gaussian_temperature(mean, log_var, y):
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

    Returns
    -------
    temperature : float
        In [0.5, 20], as :func:`fit_temperature`'s; 1.0 when ``y`` is empty.
    """
    if len(y) == 0:
        return 1.0
    residual = (y.double() - mean.double()) ** 2 * torch.exp(-log_var.double())
    temperature = float(residual.mean())
    if not math.isfinite(temperature):
        return 1.0
    return min(max(temperature, _T_MIN), _T_MAX)
