"""Gaussian regression: each expert a mean and a log-variance per target.

The outcome of :class:`~sk_i2m2.I2M2Regressor`. The target is
standardised for training; the product of Gaussian experts adds their
precisions; the temperature scales the product's variance.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.model_selection import KFold
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_array

from .._registry import REGISTRY
from .._sizing import auto_n_folds_regression
from ..nn.ensemble import GaussianFoldEnsemble
from ..nn.losses import ExpertsGaussianNLLLoss, ProductOfGaussiansNLLLoss
from ..nn.product import combine_gaussian, split_gaussian
from ..training.calibration import fit_gaussian_temperature
from ..training.net import StageNetRegressor
from ._base import Outcome, PredictionHead, StageOptions, validation_split

__all__ = ["GaussianOutcome"]


@REGISTRY.register("outcome", "gaussian")
class GaussianOutcome(Outcome):
    """Continuous targets, one or several columns, with Gaussian experts.

    Folds and the validation split are random. Small cohorts train with
    AdamW rather than L-BFGS (``lbfgs_on_small_cohorts``).
    """

    target_attributes = ("n_outputs_", "y_mean_", "y_scale_")
    # A Gaussian expert's likelihood is unbounded on its training rows (its
    # variance can shrink to 0): full-batch L-BFGS gets there within a few
    # epochs, where early-stopped mini-batch AdamW does not.
    lbfgs_on_small_cohorts = False

    def check_target(self, y, n_samples, sample_weight=None):
        if y is None:
            raise ValueError(
                f"{self.estimator_name} requires y to be passed, but the target y is None."
            )
        y = check_array(
            y, ensure_2d=False, dtype=np.float64, input_name="y", estimator=self.estimator_name
        )
        if len(y) != n_samples:
            raise ValueError(f"y has {len(y)} samples but the modalities have {n_samples}.")
        if n_samples < 2:
            raise ValueError(
                f"Got {n_samples} sample; {self.estimator_name} needs at least 2 to fit."
            )
        y = y.reshape(n_samples, -1)
        # Weighted statistics: rows of weight 0 count as absent, as everywhere.
        scaler = StandardScaler().fit(y, sample_weight=sample_weight)
        attributes = {"n_outputs_": y.shape[1], "y_mean_": scaler.mean_, "y_scale_": scaler.scale_}
        return attributes, scaler.transform(y).astype(np.float32)

    def n_outputs(self, attributes):
        return 2 * attributes["n_outputs_"]

    def stage_options(self, attributes, y, sample_weight):
        return StageOptions(
            net=StageNetRegressor, criteria=(ExpertsGaussianNLLLoss, ProductOfGaussiansNLLLoss)
        )

    def n_folds(self, y):
        return auto_n_folds_regression(len(y), self.cv)

    def splits(self, y, n_folds, seed, attributes):
        if n_folds:
            return list(KFold(n_folds, shuffle=True, random_state=seed).split(y))
        return [validation_split(y, None, self.validation_fraction, seed)]

    def fold_ensemble(self, modules):
        return GaussianFoldEnsemble(modules)

    def combine(self, outputs, available=None):
        return combine_gaussian(outputs, available)

    def calibrate(self, held_out, options, training_rows):
        if self.calibration != "temperature" or not held_out:
            return {"temperature_": 1.0}
        products = [combine_gaussian(out, available) for out, available, _, _ in held_out]
        mean, log_var = split_gaussian(torch.cat(products))
        targets = torch.cat([target for _, _, target, _ in held_out])
        weights = [weight for _, _, _, weight in held_out]
        weights = None if any(w is None for w in weights) else torch.cat(weights)
        return {"temperature_": fit_gaussian_temperature(mean, log_var, targets, weights)}

    def prediction_head(self, attributes):
        moments = _GaussianMoments(
            attributes["temperature_"],
            attributes["y_mean_"],
            attributes["y_scale_"],
            squeeze=attributes["n_outputs_"] == 1,
        )
        return PredictionHead(moments, ("mean", "std"))


class _GaussianMoments(torch.nn.Module):
    """Stacked Gaussian expert outputs -> mean and standard deviation in the units of ``y``.

    As ``predict(X, return_std=True)``: one column per target, or 1-D for
    a single target (``squeeze``).
    """

    def __init__(self, temperature, y_mean, y_scale, squeeze):
        super().__init__()
        self.register_buffer("y_mean", torch.as_tensor(np.asarray(y_mean), dtype=torch.float32))
        self.register_buffer("y_scale", torch.as_tensor(np.asarray(y_scale), dtype=torch.float32))
        self.std_factor = math.sqrt(float(temperature))
        self.squeeze = squeeze

    def forward(self, outputs):
        mean, log_var = split_gaussian(combine_gaussian(outputs))
        mean = mean * self.y_scale + self.y_mean
        std = torch.exp(0.5 * log_var) * self.std_factor * self.y_scale
        if self.squeeze:
            return mean[:, 0], std[:, 0]
        return mean, std
