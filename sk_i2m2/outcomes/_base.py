"""The interface of an outcome type: everything of a fit that depends on the target.

An estimator of the family differs from another only by its outcome: how
``y`` is checked and encoded, how many outputs an expert has, the losses
and the skorch net of the two stages, how the models of several folds are
combined, how the rows are split for early stopping, how the product is
calibrated and what an exported model predicts. :class:`Outcome` names
these parts; the fit (:mod:`sk_i2m2._fit`) and the estimators call them
and never ask which outcome they hold.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

from .._sizing import FULL_BATCH_PATIENCE, auto_batch_size
from .._warnings import warn_user

__all__ = ["Outcome", "StageOptions", "PredictionHead", "validation_split"]


#: :attr:`StageOptions.stopping_threshold` of the log-loss outcomes (classes,
#: labels). A log loss falls towards 0, so a relative fall measures progress
#: on any data set; an expert whose held-out loss has not fallen 1 % below its
#: best in ``n_iter_no_change`` epochs is creeping, and its best weights are
#: kept all the same. On the small digits image+table cohorts fits then take
#: 13-20 % less time than at 1e-4, with the same accuracy and log loss
#: (``benchmarks/small_cohorts.py``, its ``regime: stopping threshold 1e-4``
#: row; ``benchmarks/compare.py`` before and after on 1,400 rows in
#: ``benchmarks/RESULTS.md``). Losses with an offset that depends on the data
#: (a Gaussian NLL in the units of ``y``, a Cox partial likelihood) keep the
#: default 1e-4.
LOG_LOSS_STOPPING_THRESHOLD = 1e-2


@dataclass(frozen=True)
class StageOptions:
    """The outcome's part of the two training stages.

    Attributes
    ----------
    net : type
        The skorch net class of both stages, built on
        :class:`~sk_i2m2.training.net.StageNetMixin`.
    criteria : tuple of two classes
        The stage-1 loss (each expert on its own) and the stage-2 loss (the
        product of experts), both called as ``criterion(outputs, y,
        available, sample_weight=...)``.
    net_kwargs : dict
        Extra arguments of ``net``.
    criterion_kwargs : dict
        Arguments of both criteria (e.g. class weights).
    stopping_threshold : float
        Relative fall of an expert's best held-out stage-1 loss that
        restarts its ``n_iter_no_change`` count
        (:class:`~sk_i2m2.training.callbacks.ExpertCheckpoint`).
    """

    net: type
    criteria: tuple
    net_kwargs: dict = field(default_factory=dict)
    criterion_kwargs: dict = field(default_factory=dict)
    stopping_threshold: float = 1e-4


@dataclass(frozen=True)
class PredictionHead:
    """A fitted model's predictions as one torch module, for export.

    Attributes
    ----------
    module : torch.nn.Module
        Takes the experts' stacked outputs ``(n_experts, n_samples,
        n_outputs)``, every expert seeing every sample, and returns what the
        estimator predicts (calibrated, in the units of ``y``).
    output_names : tuple of str
        One name per output of ``module``.
    metadata : dict of str to str
        What a reader needs to interpret the outputs (e.g. the class labels
        as JSON).
    """

    module: object
    output_names: tuple
    metadata: dict = field(default_factory=dict)


class Outcome(abc.ABC):
    """One outcome type of the I2M2 estimators (classes, labels, Gaussian, Cox ...).

    An outcome holds the estimator parameters it reads (listed in
    ``parameters``) and works on the *target attributes*: the fitted
    attributes that describe the target (``target_attributes``, e.g.
    ``classes_``, or a baseline hazard), which :meth:`check_target` and
    :meth:`calibrate` return and a saved model must hold. It sets no
    attribute on the estimator: the estimator stores what it returns.
    Register a new outcome with ``@REGISTRY.register("outcome", name)`` and
    give its estimator ``_outcome_type = ThatOutcome``.

    Parameters
    ----------
    cv, validation_fraction, calibration
        The estimator's parameters of the same names.
    estimator_name : str
        Named in error messages.
    """

    #: Estimator parameters passed to ``__init__``.
    parameters = ("cv", "validation_fraction", "calibration")
    #: Fitted attributes that describe the target; a saved model must have them.
    target_attributes = ()
    #: Values of target attributes that models saved by older versions lack.
    saved_defaults = {}
    #: Whether ``optimizer="auto"`` may train small cohorts full-batch with L-BFGS.
    lbfgs_on_small_cohorts = True
    #: Epochs of patience of ``n_iter_no_change="auto"`` with L-BFGS.
    full_batch_patience = FULL_BATCH_PATIENCE
    #: Fewer training samples than this get the small-cohort defaults;
    #: ``None``: ``sk_i2m2._sizing.SMALL_COHORT``.
    small_cohort_size = None
    #: Whether the calibration weighs each expert once per output column
    #: (``expert_weights_`` values are arrays) rather than once.
    expert_weights_per_output = False

    def __init__(
        self, *, cv="auto", validation_fraction=0.15, calibration="temperature", estimator_name=""
    ):
        self.cv = cv
        self.validation_fraction = validation_fraction
        self.calibration = calibration
        self.estimator_name = estimator_name or type(self).__name__

    @classmethod
    def for_target(cls, y, **params):
        """The outcome that fits ``y`` (this one; a family may pick a sibling by ``y``'s form)."""
        return cls(**params)

    @classmethod
    def for_fitted(cls, attributes, **params):
        """The outcome of a model whose fitted attributes are ``attributes``."""
        return cls(**params)

    # ------------------------------------------------------------------
    # The target

    @abc.abstractmethod
    def check_target(self, y, n_samples, sample_weight=None):
        """Validate ``y``; return ``(attributes, y_train)``.

        ``attributes`` maps the target attributes to their values;
        ``y_train`` is the target as the stage nets train on it (a numpy
        array whose dtype the batches keep). ``sample_weight`` (validated)
        weighs any statistic of the target.
        """

    @abc.abstractmethod
    def n_outputs(self, attributes):
        """Number of outputs of each expert for the target ``attributes``."""

    # ------------------------------------------------------------------
    # Training

    @abc.abstractmethod
    def stage_options(self, attributes, y, sample_weight):
        """The :class:`StageOptions` of a fit on the training target ``y``.

        Computed (and validated, e.g. class weights) before any fitted
        state changes; ``sample_weight`` is ``None`` for an unweighted fit.
        """

    @abc.abstractmethod
    def n_folds(self, y):
        """Number of cross-fitting folds for ``cv`` on the training target, or ``None``."""

    @abc.abstractmethod
    def splits(self, y, n_folds, seed, attributes):
        """``(train_rows, valid_rows)`` of each model trained with early stopping.

        ``n_folds`` from :meth:`n_folds`; ``None`` asks for one validation
        split of ``validation_fraction``. ``seed`` seeds any shuffling.
        """

    def auto_batch_size(self, n_train, optimizer):
        """The batch size of ``batch_size="auto"`` for ``n_train`` training rows."""
        return auto_batch_size(n_train, optimizer)

    @abc.abstractmethod
    def fold_ensemble(self, modules):
        """The cross-fitted models as one module, still a product of experts."""

    # ------------------------------------------------------------------
    # Calibration and prediction

    @abc.abstractmethod
    def combine(self, outputs, available=None):
        """The product of the experts' ``outputs`` ``(n_experts, n_samples, n_outputs)``."""

    @abc.abstractmethod
    def calibrate(self, held_out, options, training_rows):
        """The calibration's fitted attributes (at least ``temperature_``).

        ``held_out`` lists ``(expert_outputs, available, y, sample_weight)``
        of each model's validation rows (empty without them): ``available``
        a bool mask ``(n_experts, n_samples)`` or ``None``,
        ``sample_weight`` a float tensor or ``None``; ``options`` is
        :meth:`stage_options`' result; ``training_rows()`` gives
        ``(expert_outputs, available, y, sample_weight)`` of every training
        row under the fitted model, ``y`` and ``sample_weight`` as numpy
        arrays (computed only when called: for statistics of the fitted
        model such as a baseline hazard).
        """

    def prediction_head(self, attributes):
        """The :class:`PredictionHead` of a fitted model, or ``None``.

        ``attributes`` holds the fitted model's target and calibration
        attributes. ``None`` (the default) says the predictions cannot be
        written as one module, and :func:`~sk_i2m2.to_onnx` refuses the
        model.
        """
        return None


def validation_split(y, classes, validation_fraction, seed):
    """Train and validation rows of the target ``y``.

    With ``classes`` (``y`` the class codes), stratified when every class
    has two samples, otherwise random with a warning naming the rare
    class; ``classes=None``: random.
    """
    n, n_classes = len(y), (1 if classes is None else len(classes))
    n_valid = max(math.ceil(validation_fraction * n), n_classes)
    if n - n_valid < 2:
        raise ValueError(
            f"Too few samples ({n}) for a validation split of "
            f"validation_fraction={validation_fraction}; pass "
            "early_stopping=False to train on all samples."
        )
    if classes is None:
        return next(ShuffleSplit(1, test_size=n_valid, random_state=seed).split(np.zeros(n)))
    counts = np.bincount(y, minlength=n_classes)
    if counts.min() >= 2 and n - n_valid >= n_classes:
        splitter = StratifiedShuffleSplit(1, test_size=n_valid, random_state=seed)
        return next(splitter.split(np.zeros(n), y))
    rare = classes[np.argmin(counts)]
    rare = rare.item() if isinstance(rare, np.generic) else rare
    warn_user(
        f"The validation split ({n_valid} of {n} samples) cannot be stratified: "
        f"class {rare!r} has {counts.min()} sample(s). Using a random split instead, "
        "so early stopping may rest on few or no samples of that class; "
        "early_stopping=False trains on all samples."
    )
    return next(ShuffleSplit(1, test_size=n_valid, random_state=seed).split(np.zeros(n)))
