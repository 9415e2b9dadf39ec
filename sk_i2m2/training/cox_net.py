"""The skorch net that runs one training stage of Cox experts (the survival estimator)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from skorch import NeuralNetRegressor

from ..nn.cox import combine_log_risk
from .net import StageNetMixin, plain_module

__all__ = ["StageNetSurvival"]


class StageNetSurvival(StageNetMixin, NeuralNetRegressor):
    """skorch ``NeuralNetRegressor`` for one stage of I2M2's Cox experts.

    The survival sibling of :class:`~sk_i2m2.training.net.StageNetRegressor`,
    with the same extension points. Its target is a float array of shape
    ``(n_samples, 2)``, time and event; its predictions are the log-risk
    of the product of the stage's experts, the sum of their log-risks
    (:func:`~sk_i2m2.nn.cox.combine_log_risk`, leaving out experts that
    cannot see a sample), of shape ``(n_samples, 1)``.

    Parameters
    ----------
    *args, **kwargs
        As for ``skorch.NeuralNetRegressor``.
    """

    _target_dtype = torch.float32

    def evaluation_step(self, batch, training=False):
        outputs = super().evaluation_step(batch, training=training)
        Xi = batch[0]
        available = plain_module(self.module_).availability(Xi) if isinstance(Xi, Mapping) else None
        return combine_log_risk(outputs, available)
