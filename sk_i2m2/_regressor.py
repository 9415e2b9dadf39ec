"""I2M2Regressor: the estimator of continuous targets; prediction.

What depends on the target is the outcome's (:mod:`sk_i2m2.outcomes.gaussian`).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import RegressorMixin, _fit_context
from sklearn.utils._param_validation import StrOptions

from ._base import I2M2Base
from .nn.product import combine_gaussian, split_gaussian
from .outcomes.gaussian import GaussianOutcome

__all__ = ["I2M2Regressor"]


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
    dependencies : {"both", "intra", "inter"}, default="both"
        Which dependencies to model: ``"both"`` is I2M2 (every intra expert
        and the inter expert); ``"intra"`` the product of the intra experts
        only; ``"inter"`` the inter expert only. With a single modality all
        three are one unimodal regressor.
    fusion : {"concat", "lrtf"} or FusionSpec, default="concat"
        Fusion of the inter expert: ``"concat"`` (late fusion,
        :class:`~sk_i2m2.fusion.ConcatFusion`) or ``"lrtf"`` (low-rank
        tensor fusion, :class:`~sk_i2m2.fusion.LowRankTensorFusion`). Pass a
        spec object to set its hyperparameters (``fusion__rank`` etc.).
    encoders : dict or None, default=None
        Modality name -> encoder: an :class:`~sk_i2m2.encoders.EncoderSpec`
        (e.g. ``MLPEncoder(hidden_sizes=(256,))``), a kind name (``"mlp"``,
        ``"conv2d"``, ``"conv3d"``, ``"gru"``), or a ``torch.nn.Module``
        class, factory or instance mapping a batch to ``(batch, features)``.
        Modalities not listed get a default encoder chosen from their shape
        (see :func:`~sk_i2m2.encoders.infer_encoder_kind`); on fewer than
        1000 samples a vector modality's default is a linear expert
        (``MLPEncoder(hidden_sizes=())``) and ``fusion="concat"`` a narrow
        one (``ConcatFusion(hidden_size=16)``). Spec hyperparameters are
        reachable as ``encoders__<modality>__<param>``.
    max_epochs : int, default=100
        Maximum epochs of stage 1 (pretraining the experts).
    finetune_epochs : int or None, default=None
        Maximum epochs of stage 2 (joint fine-tuning); ``None`` means
        ``max_epochs``, 0 skips stage 2 (the product of the independently
        trained experts is used as is).
    lr : float, default=1e-3
        Learning rate of stage 1 (at batches of up to 256; see
        ``lr_schedule``).
    finetune_lr : float or None, default=None
        Learning rate of stage 2; ``None`` means ``lr / 10``.
    batch_size : int or "auto", default="auto"
        Mini-batch size. ``"auto"`` uses every training row with L-BFGS
        (full-batch training) and otherwise ``n_train // 16`` clipped to
        [16, 256]: about 16 steps per epoch on small data, 256 on large
        data sets.
    lr_schedule : {"auto", "constant"}, default="auto"
        Learning rate over the steps of each stage. ``"constant"`` trains at
        ``lr`` (``finetune_lr`` in stage 2) throughout. ``"auto"`` does the
        same for batches of up to 256; a larger batch, which takes fewer
        optimizer steps per epoch, trains at ``k`` times the rate, ``k =
        min(batch_size, n_train) / 256``, reached by a linear warm-up from
        the unscaled rate over the first 5 epochs (a tenth of the stage's
        epochs if fewer), so that it makes the progress per epoch of a
        batch of 256 (:class:`~sk_i2m2.callbacks.LargeBatchLR`). A stage
        given an ``LRScheduler`` in ``callbacks`` runs that scheduler alone,
        from the unscaled rate.
    optimizer : torch optimizer class or "auto", default="auto"
        ``"auto"`` is ``torch.optim.AdamW`` (fitted as ``optimizer_``): a
        Gaussian expert's likelihood is unbounded on its training rows, which
        early-stopped mini-batches guard against. An L-BFGS class trains
        full-batch as in :class:`~sk_i2m2.I2M2Classifier`.
    weight_decay : float or "auto", default="auto"
        Passed to the optimizer; with L-BFGS, which takes none, the loss
        gets an L2 penalty ``weight_decay / 2 * ||W||^2`` on the weight
        matrices of each training expert instead (biases excluded).
        ``"auto"``: ``1 / n_train`` with L-BFGS, 1e-4 otherwise (fitted as
        ``weight_decay_``).
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the training data (at random),
        stop a stage after ``n_iter_no_change`` epochs without improvement
        of the validation loss, and restore the best epoch. ``False``
        trains every stage for its full number of epochs on all data.
    validation_fraction : float, default=0.15
        Share of the training data held out when ``early_stopping=True``
        and ``cv`` gives no folds.
    cv : int, "auto" or None, default="auto"
        Inner cross-fitting for early stopping (with ``early_stopping=True``):
        with ``k`` folds, one model is trained per fold, early-stopped and
        calibrated on its held-out fold, and the fitted model is their
        ensemble (each expert the geometric mean of its ``k`` Gaussians, a
        Gaussian, so still a product of experts), which uses every row for training and
        every row for stopping. It costs about ``k`` fits. ``"auto"``: 5
        folds on fewer than 1000 samples, where a single validation split is
        too small to stop on, else ``None``: one split of
        ``validation_fraction``.
    n_iter_no_change : int or "auto", default="auto"
        Patience, in epochs, of early stopping. ``"auto"``: 3 with L-BFGS,
        10 otherwise (fitted as ``n_iter_no_change_``).
    inter_missing : {"null", "drop"}, default="null"
        How the inter expert handles a sample that misses a modality (see
        *Missing modalities* below): ``"null"`` puts a learned null
        embedding in place of the missing modality's features; ``"drop"``
        leaves the inter expert out of that sample's product.
    modality_dropout : float in [0, 1), default=0.0
        Probability with which each modality of each training sample is
        hidden from the inter expert (never all of a sample's modalities),
        which trains its null embeddings so that it degrades gracefully
        when modalities go missing. Only with ``inter_missing="null"``;
        no effect without an inter expert. 0 leaves complete data untouched.
    calibration : {"temperature"} or None, default="temperature"
        ``"temperature"`` scales the variance of the product of experts by
        one factor fitted on the validation rows after stage 2 (the
        temperature of its density), so that ``predict(X, return_std=True)``
        gives calibrated standard deviations; the mean, hence ``predict``,
        does not change. Needs held-out rows: with ``early_stopping=False``
        the temperature stays 1. ``None`` keeps the raw product.
    augment : dict or None, default=None
        Modality name -> train-time transform of whole training batches, as
        for :class:`~sk_i2m2.I2M2Classifier`.
    standardize : bool, default=True
        Standardise inputs inside the model with statistics of the training
        rows: per feature for vectors and sequences, per channel for images
        and volumes (a constant feature is only centred). Modalities with a
        user ``torch.nn.Module`` encoder are left alone unless its
        :class:`~sk_i2m2.encoders.ModuleEncoder` says otherwise.
    callbacks : list, dict or None, default=None
        skorch callbacks (or ``(name, callback)`` pairs) for the stage nets:
        a list applies to both stages, a dict ``{"pretrain": [...],
        "finetune": [...]}`` to the stages it names. Each stage gets its own
        copy of each callback, so stock skorch callbacks (``EpochScoring``,
        ``ProgressBar``, ``Checkpoint`` with ``LoadInitState``,
        ``LRScheduler``, ``GradientNormClipping``, loggers) work in either
        stage; checkpoint files are prefixed with the stage name.
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when available, else the CPU.
    device_memory_budget : float in [0, 1], default=0.5
        On CUDA, the training data is copied to the GPU once when it takes at
        most this fraction of the GPU's free memory, and batches are then
        sliced on the GPU; larger data stays in host memory and each batch is
        copied through pinned memory. 0 always keeps data on the host.
    compile : bool, default=False
        Compile the model with ``torch.compile`` (skorch's ``compile``).
        Pays a compilation cost per stage; worth it for long runs on GPU.
    mixed_precision : bool, default=False
        Run forward passes under bfloat16 autocast. Off by default: for
        LeNet-sized experts on an H100 it was slower than float32 at batch
        sizes 40 and 256.
    accelerator : accelerate.Accelerator or None, default=None
        Train each stage data-parallel across the processes of an
        ``accelerate launch`` or ``torchrun`` run, as for
        :class:`~sk_i2m2.I2M2Classifier` (see the user guide's *Scaling out*
        page).
    warm_start : bool, default=False
        Keep the experts the previous ``fit`` trained in stage 1 and train
        only those it did not have, as for :class:`~sk_i2m2.I2M2Classifier`:
        after ``dependencies="both"``, the ``"intra"`` and ``"inter"``
        baselines cost a stage 2 or only the calibration. Fit on the same
        data (the seed ``seed_`` is reused).
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, dropout, shuffling and the validation
        split; with an int, fitting twice on the CPU gives identical models.
    verbose : int, default=0
        0 is silent; 1 shows a progress bar per stage (epochs, losses, best
        epoch) in a terminal or notebook and prints one summary line per
        stage; 2 also prints skorch's per-epoch table.

    Attributes
    ----------
    n_outputs_ : int
        Number of targets (columns of a 2-D ``y``; 1 for a 1-D ``y``).
    y_mean_, y_scale_ : ndarray of shape (n_outputs,)
        Mean and standard deviation of each target in ``fit`` (a constant
        target has scale 1); the experts work on ``(y - y_mean_) / y_scale_``.
    modalities_ : list of str
        Modality names seen in ``fit``, in order.
    input_shapes_ : dict
        Modality -> per-sample shape seen in ``fit``.
    feature_names_in_ : dict
        Modality -> column names, for modalities passed as DataFrames.
    encoders_ : dict
        Modality -> the encoder spec that was used.
    expert_names_ : list of str
        Experts of the model: modality names (intra experts) and/or
        ``"inter"``.
    missing_rate_ : dict
        Modality -> fraction of the training samples that missed it.
    pretrain_net_ : StageNetRegressor or None
        Stage-1 net, holding the experts as pretrained (and its history);
        that of the first fold with ``cv`` folds; ``None`` in a model
        restored by :meth:`load`. Its predictions are in standardised units.
    finetune_net_ : StageNetRegressor or None
        Stage-2 net, or ``None`` when there is no stage 2 (a single
        expert, ``finetune_epochs=0``, an interrupted stage 1, or a model
        restored by :meth:`load`); that of the first fold with ``cv`` folds.
    fold_nets_ : list of tuple or None
        With ``cv`` folds, ``(pretrain_net, finetune_net)`` of each fold.
    n_folds_ : int
        Number of fold models in ``module_`` (1 without cross-fitting).
    optimizer_ : torch optimizer class
        The optimizer both stages trained with (``optimizer="auto"``'s choice).
    batch_size_ : int
        The batch size the stages trained with (all training rows with L-BFGS).
    weight_decay_ : float
        The weight decay (L2 penalty with L-BFGS) the stages trained with.
    n_iter_no_change_ : int
        The early-stopping patience the stages trained with, in epochs.
    pretrained_experts_ : list of dict
        Only after a fit with ``warm_start=True``: per fold model, expert
        name -> the expert as trained in stage 1, for every expert trained
        so far on this data.
    seed_ : int
        The seed this fit drew from ``random_state`` (validation split or
        folds, initialisation, batch order); ``warm_start`` reuses it.
    interrupted_stage_ : str or None
        ``"pretrain"`` or ``"finetune"`` when a ``KeyboardInterrupt``
        stopped training in that stage (the model then holds the best
        weights so far and later stages were skipped), else ``None``.
    temperature_ : float
        Factor of the product's variance in ``predict(X, return_std=True)``
        (1.0 without calibration).
    module_ : I2M2Module or GaussianFoldEnsemble
        The fitted torch module used for prediction; its experts output
        standardised means and log-variances.
    device_ : torch.device
        Device the model was trained on.

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

    _outcome_type = GaussianOutcome

    _parameter_constraints = {
        **I2M2Base._parameter_constraints,
        "calibration": [StrOptions({"temperature"}), None],
    }

    def __init__(
        self,
        dependencies="both",
        fusion="concat",
        encoders=None,
        *,
        max_epochs=100,
        finetune_epochs=None,
        lr=1e-3,
        finetune_lr=None,
        batch_size="auto",
        lr_schedule="auto",
        optimizer="auto",
        weight_decay="auto",
        early_stopping=True,
        validation_fraction=0.15,
        cv="auto",
        n_iter_no_change="auto",
        inter_missing="null",
        modality_dropout=0.0,
        calibration="temperature",
        augment=None,
        standardize=True,
        callbacks=None,
        device="auto",
        device_memory_budget=0.5,
        compile=False,
        mixed_precision=False,
        accelerator=None,
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        super().__init__(
            dependencies,
            fusion,
            encoders,
            max_epochs=max_epochs,
            finetune_epochs=finetune_epochs,
            lr=lr,
            finetune_lr=finetune_lr,
            batch_size=batch_size,
            lr_schedule=lr_schedule,
            optimizer=optimizer,
            weight_decay=weight_decay,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            cv=cv,
            n_iter_no_change=n_iter_no_change,
            inter_missing=inter_missing,
            modality_dropout=modality_dropout,
            augment=augment,
            standardize=standardize,
            callbacks=callbacks,
            device=device,
            device_memory_budget=device_memory_budget,
            compile=compile,
            mixed_precision=mixed_precision,
            accelerator=accelerator,
            warm_start=warm_start,
            random_state=random_state,
            verbose=verbose,
        )
        self.calibration = calibration

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
