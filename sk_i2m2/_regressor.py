"""I2M2Regressor: the estimator of continuous targets; prediction.

What depends on the target is the outcome's (:mod:`sk_i2m2.outcomes.gaussian`).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin, _fit_context

from ._base import I2M2Base
from ._docstrings import fill_docstring
from .nn.product import combine_gaussian, split_gaussian
from .outcomes.gaussian import GaussianOutcome

__all__ = ["I2M2Regressor"]


@fill_docstring
class I2M2Regressor(RegressorMixin, I2M2Base):
    """I2M2 multi-modal regressor: a product of Gaussian intra- and inter-modality experts.

    The regression counterpart of :class:`~sk_i2m2.I2M2Classifier`. Each
    expert predicts a Gaussian, a mean and a log-variance per target: an
    intra expert ``q_k(y | x_k)`` from one modality, the inter expert
    ``q_inter(y | x_1..x_M)`` from the fused features of all of them. The
    model is their normalised product, again a Gaussian, whose precision
    is the sum of the experts' precisions and whose mean is the
    precision-weighted mean of theirs
    (:func:`~sk_i2m2.nn.product.combine_gaussian`): an expert counts in a
    prediction as much as it is sure of it.

    Training runs in the classifier's two stages, each a skorch
    ``NeuralNetRegressor`` (so skorch callbacks and history apply):

    1. **pretrain** -- every expert is trained on its own Gaussian negative
       log-likelihood; each expert's best epoch on the validation split is
       kept.
    2. **finetune** -- the product of the pretrained experts is trained
       jointly on its Gaussian negative log-likelihood at ``finetune_lr``,
       restoring the best epoch on the same validation split.

    The target is standardised inside the model (with the mean and standard
    deviation of the ``y`` passed to ``fit``, as a ``StandardScaler``
    would); predictions are in the units of ``y``.

    Parameters
    ----------
    %(dependencies)s
    %(fusion)s
    %(encoders)s
    %(max_epochs)s
    %(finetune_epochs)s
    %(lr)s
    %(finetune_lr)s
    %(batch_size)s
    %(lr_schedule)s
    optimizer : torch optimizer class or "auto", default="auto"
        ``"auto"`` is ``torch.optim.AdamW`` (fitted as ``optimizer_``): a
        Gaussian expert's likelihood is unbounded on its training rows, which
        early-stopped mini-batches guard against.
        %(lbfgs_optimizer)s
    %(weight_decay)s
    %(early_stopping)s
    %(validation_fraction)s
    %(cv)s
    %(n_iter_no_change)s
    %(inter_missing)s
    %(modality_dropout)s
    %(augment)s
    calibration : {"temperature"} or None, default="temperature"
        ``"temperature"`` scales the variance of the product of experts by
        one factor fitted on the validation rows after stage 2 (the
        temperature of its density), so that ``predict(X, return_std=True)``
        gives calibrated standard deviations; the mean, hence ``predict``,
        does not change. Needs held-out rows: with ``early_stopping=False``
        the temperature stays 1. ``None`` keeps the raw product.
    %(standardize)s
    %(callbacks)s
    %(device)s
    %(device_memory_budget)s
    %(compile)s
    %(mixed_precision)s
    %(accelerator)s
    %(warm_start)s
    %(random_state)s
    %(verbose)s

    Attributes
    ----------
    n_outputs_ : int
        Number of targets (columns of a 2-D ``y``; 1 for a 1-D ``y``).
    y_mean_, y_scale_ : ndarray of shape (n_outputs,)
        Mean and standard deviation of each target in ``fit`` (a constant
        target has scale 1); the experts work on ``(y - y_mean_) / y_scale_``.
    temperature_ : float
        Factor of the product's variance in ``predict(X, return_std=True)``
        (1.0 without calibration).
    module_ : I2M2Module or GaussianFoldEnsemble
        The fitted torch module used for prediction; its experts output
        standardised means and log-variances, as do the stage nets.
    %(fitted_attributes)s

    See Also
    --------
    I2M2Classifier : The product of experts for class labels.
    I2M2SurvivalAnalysis : The product of Cox experts, for time-to-event targets.

    Notes
    -----
    A sample misses a modality when all its values in it are NaN or, at
    prediction, when the modality is left out of ``X``; an expert that
    cannot see a sample contributes precision 0, so the product runs over
    the experts that see it (see the user guide's *Missing modalities*
    page).

    Examples
    --------
    >>> from sk_i2m2 import I2M2Regressor
    >>> from sk_i2m2.datasets import make_multimodal_regression
    >>> X, y = make_multimodal_regression(200, random_state=0)
    >>> reg = I2M2Regressor(max_epochs=5, random_state=0).fit(X, y)
    >>> mean, std = reg.predict(X, return_std=True)
    >>> mean.shape, std.shape
    ((200,), (200,))
    >>> sorted(reg.expert_predict(X))
    ['inter', 'm0', 'm1']
    """

    # The parameters are I2M2Base's: its __init__ is inherited.
    _outcome_type = GaussianOutcome

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    # ------------------------------------------------------------------
    # Fit

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the Gaussian experts (stage 1) and fine-tune their product (stage 2).

        Parameters
        ----------
        X : dict or ModalityDict
            Modality name -> array-like with samples on the first axis, as
            for :meth:`I2M2Classifier.fit <sk_i2m2.I2M2Classifier.fit>`.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Target values (finite numbers); with several columns, each
            expert predicts an independent Gaussian per column.
        sample_weight : array-like of shape (n_samples,), float or None, default=None
            Non-negative weights of the samples: every Gaussian negative
            log-likelihood (both stages, early stopping, the variance
            temperature) is a weighted mean; rows of weight 0 are dropped
            before anything else, as for
            :meth:`I2M2Classifier.fit <sk_i2m2.I2M2Classifier.fit>`. Under
            scikit-learn's metadata routing, request it with
            ``set_fit_request(sample_weight=True)``.

        Returns
        -------
        self : I2M2Regressor

        Raises
        ------
        TypeError, ValueError
            For invalid inputs or parameters, before any training; the
            message names the modality and the problem.
        FloatingPointError
            When a training loss becomes NaN or infinite.

        Any error leaves a previously fitted model as it was. A
        ``KeyboardInterrupt`` during training is not an error: ``fit``
        returns with a warning and the best weights so far (see
        ``interrupted_stage_``).
        """
        return self._fit(X, y, sample_weight)

    # ------------------------------------------------------------------
    # Prediction

    def _to_target_units(self, mean, log_var, temperature=1.0):
        """Standardised means and log-variances -> means and stds in the units of ``y``."""
        mean = mean.double().numpy() * self.y_scale_ + self.y_mean_
        std = np.exp(0.5 * log_var.double().numpy()) * np.sqrt(temperature) * self.y_scale_
        if self.n_outputs_ == 1:
            return mean[..., 0], std[..., 0]
        return mean, std

    def predict(self, X, return_std=False):
        """Mean (and standard deviation) of the product of experts.

        Parameters
        ----------
        X : dict or ModalityDict
            The modalities seen in ``fit``; any may be left out or missing
            in some samples (all-NaN rows), as long as each sample has one.
        return_std : bool, default=False
            Also return the standard deviation of the product (scaled by
            ``temperature_``).

        Returns
        -------
        y_mean : ndarray of shape (n_samples,) or (n_samples, n_outputs)
            1-D when ``n_outputs_`` is 1, as in ``MLPRegressor``.
        y_std : ndarray, same shape as ``y_mean``
            Only with ``return_std=True``.
        """
        outputs, available = self._expert_logits(X)
        mean, log_var = split_gaussian(combine_gaussian(outputs.double(), available))
        mean, std = self._to_target_units(mean, log_var, self.temperature_)
        return (mean, std) if return_std else mean

    def expert_predict(self, X, *, stage="final", return_std=False):
        """Each expert's own Gaussian: its mean (and standard deviation).

        Parameters
        ----------
        X : dict or ModalityDict
        stage : {"final", "pretrain"}, default="final"
            ``"final"``: the experts of the fitted model (after stage 2);
            ``"pretrain"``: the experts as trained on their own in stage 1
            (needs ``pretrain_net_``, so not on a loaded model).
        return_std : bool, default=False
            Also return the experts' standard deviations (not scaled by
            ``temperature_``, which calibrates the product).

        Returns
        -------
        means : dict
            Expert name (a modality name for an intra expert, ``"inter"``
            for the inter expert) -> ndarray of shape (n_samples,) or
            (n_samples, n_outputs), as for :meth:`predict`. Rows of samples
            an expert cannot see (its modality is missing; for the inter
            expert with ``inter_missing="drop"``, any modality is missing)
            are NaN.
        stds : dict
            Likewise, the standard deviations; only with ``return_std=True``.
        """
        outputs, available = self._expert_logits(X, self._stage_module(stage))
        mean, log_var = split_gaussian(outputs)
        if available is not None:
            hidden = ~available.unsqueeze(-1)
            mean = mean.masked_fill(hidden, float("nan"))
            log_var = log_var.masked_fill(hidden, float("nan"))
        mean, std = self._to_target_units(mean, log_var)
        means = {name: mean[i] for i, name in enumerate(self.expert_names_)}
        stds = {name: std[i] for i, name in enumerate(self.expert_names_)}
        return (means, stds) if return_std else means
