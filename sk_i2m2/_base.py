"""I2M2Base: the target-agnostic machinery of the I2M2 estimators.

Parameters, nested encoder parameters, the fit skeleton (validate X ->
build -> run the stages -> store, restoring the previous fit on error),
cross-fitting and batched expert outputs. The estimators add what depends
on the target through a few hooks: ``_check_target``, ``_n_folds``,
``_stage_options``, ``_early_stopping_splits``, ``_n_outputs``,
``_fold_ensemble`` and ``_calibrate``.
"""

from __future__ import annotations

import abc
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._allocator import cpu_allocator
from ._device import cudnn_autotune, data_device, resolve_device, to_channels_last
from ._inference import expert_logits
from ._lazy import LazyRows, materialize, take
from ._missing import check_fit_options, check_samples_have_an_expert, warn_untrained_null
from ._parallel import check_accelerator, shared_seed
from ._persistence import SaveLoadMixin
from ._sizing import (
    auto_batch_size,
    auto_optimizer,
    auto_patience,
    auto_weight_decay,
    full_batch_fits,
    is_full_batch,
    is_small_cohort,
)
from ._threads import (
    PARALLEL_STEP_FLOPS,
    remember_row_flops,
    row_flops,
    step_flops,
    torch_threads,
)
from ._validation import check_augment, check_modalities, check_sample_weight
from ._warm_start import experts_to_keep
from .encoders import nested_encoder_params, resolve_encoders, set_nested_encoder_params
from .fusion import FusionSpec, resolve_fusion
from .nn.build import build_module_for, cached_modalities, precompute_frozen
from .nn.experts import PRESENT, SAMPLE_WEIGHT
from .training.callbacks import check_callbacks
from .training.stages import TrainingPlan, run_stages, split_datasets

__all__ = ["I2M2Base"]


class I2M2Base(SaveLoadMixin, BaseEstimator, metaclass=abc.ABCMeta):
    """Base class of the I2M2 estimators; not for direct use.

    ``__init__`` stores the shared parameters (documented once, in
    :mod:`sk_i2m2._docstrings`). scikit-learn reads the parameters from the
    class's ``__init__`` signature, so a subclass with parameters or
    defaults of its own declares it in full and calls this one. A subclass
    defines a public ``fit`` that calls :meth:`_fit`, and the hooks below.
    """

    # Fitted attributes that describe the target, required in a saved model.
    _target_attributes = ()
    # Whether optimizer="auto" may train small cohorts full-batch with L-BFGS.
    _lbfgs_on_small_cohorts = True

    _parameter_constraints = {
        "dependencies": [StrOptions({"both", "intra", "inter"})],
        "fusion": [StrOptions({"concat", "lrtf"}), FusionSpec],
        "encoders": [dict, None],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "finetune_epochs": [Interval(numbers.Integral, 0, None, closed="left"), None],
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "finetune_lr": [Interval(numbers.Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "lr_schedule": [StrOptions({"auto", "constant"})],
        "optimizer": [type, StrOptions({"auto"})],
        "weight_decay": [Interval(numbers.Real, 0, None, closed="left"), StrOptions({"auto"})],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "cv": [Interval(numbers.Integral, 2, None, closed="left"), StrOptions({"auto"}), None],
        "n_iter_no_change": [
            Interval(numbers.Integral, 1, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "inter_missing": [StrOptions({"null", "drop"})],
        "modality_dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "augment": [dict, None],
        "calibration": [StrOptions({"temperature"}), None],
        "standardize": ["boolean"],
        "callbacks": [list, dict, None],
        "device": [str, torch.device],
        "device_memory_budget": [Interval(numbers.Real, 0, 1, closed="both")],
        "compile": ["boolean"],
        "mixed_precision": ["boolean"],
        "accelerator": [HasMethods(["prepare", "backward"]), None],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
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
        augment=None,
        calibration="temperature",
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
        self.dependencies = dependencies
        self.fusion = fusion
        self.encoders = encoders
        self.max_epochs = max_epochs
        self.finetune_epochs = finetune_epochs
        self.lr = lr
        self.finetune_lr = finetune_lr
        self.batch_size = batch_size
        self.lr_schedule = lr_schedule
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.cv = cv
        self.n_iter_no_change = n_iter_no_change
        self.inter_missing = inter_missing
        self.modality_dropout = modality_dropout
        self.augment = augment
        self.calibration = calibration
        self.standardize = standardize
        self.callbacks = callbacks
        self.device = device
        self.device_memory_budget = device_memory_budget
        self.compile = compile
        self.mixed_precision = mixed_precision
        self.accelerator = accelerator
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------
    # Nested encoder parameters: ``encoders__<modality>__<param>``.

    def get_params(self, deep=True):
        params = super().get_params(deep=deep)
        if deep:
            params.update(nested_encoder_params(self.encoders))
        return params

    def set_params(self, **params):
        nested = {k: params.pop(k) for k in list(params) if k.startswith("encoders__")}
        super().set_params(**params)
        if nested:
            self.encoders = set_nested_encoder_params(self.encoders, nested)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.dict = True
        tags.input_tags.sparse = True  # kept sparse, densified one batch at a time
        tags.non_deterministic = False
        return tags

    # ------------------------------------------------------------------
    # Hooks of the estimators

    @abc.abstractmethod
    def _check_target(self, y, n_samples, sample_weight=None):
        """Validate ``y``; return ``(fitted, y_train)``.

        ``fitted`` maps the fitted attributes that describe the target (e.g.
        ``classes_``) to their values, set only once every check has passed;
        ``y_train`` is the target as the stage nets train on it (a numpy
        array whose dtype the batches keep). ``sample_weight`` (validated)
        weighs any statistics of the target.
        """

    @abc.abstractmethod
    def _n_folds(self, y):
        """Number of cross-fitting folds for the ``cv`` parameter, or ``None`` (one split)."""

    @abc.abstractmethod
    def _stage_options(self, fitted, y, sample_weight):
        """The target's :class:`~sk_i2m2.training.stages.TrainingPlan` fields.

        ``net``, ``net_kwargs``, ``criteria`` and ``criterion_kwargs``,
        computed (and validated) before any fitted state changes; ``fitted``
        is the first item :meth:`_check_target` returned; ``sample_weight``
        the training rows' weights or ``None`` (e.g. for balanced class
        weights).
        """

    @abc.abstractmethod
    def _early_stopping_splits(self, y, n_folds, seed):
        """``(train_rows, valid_rows)`` of each model trained with early stopping."""

    @abc.abstractmethod
    def _n_outputs(self):
        """Number of outputs of each expert (read once the target is fitted)."""

    @abc.abstractmethod
    def _fold_ensemble(self, modules):
        """The cross-fitted models as one module, still a product of experts."""

    @abc.abstractmethod
    def _calibrate(self, held_out, options):
        """Set the calibration's fitted attributes from the held-out expert outputs.

        ``held_out`` lists ``(expert_outputs, available, y, sample_weight)``
        of each model's validation rows (empty without them), ``available``
        as in :meth:`_expert_logits`, ``sample_weight`` a float tensor or
        ``None`` for unweighted fits; ``options`` is :meth:`_stage_options`'s.
        """

    def _auto_batch_size(self, n_train):
        """The batch size of ``batch_size="auto"`` for ``n_train`` training rows."""
        return auto_batch_size(n_train, self.optimizer_)

    # ------------------------------------------------------------------
    # Fit

    def _fit(self, X, y, sample_weight=None):
        """The public ``fit`` of the estimators: validate, then train and store.

        ``sample_weight`` is validated here and travels with the rows (see
        :data:`~sk_i2m2.nn.experts.SAMPLE_WEIGHT`); every criterion takes it
        as ``sample_weight``. Rows of weight 0 are dropped first
        (:func:`_drop_zero_weights`).
        """
        tensors, columns, present = check_modalities(X, encoders=self.encoders)
        n_samples = len(next(iter(tensors.values())))
        sample_weight = check_sample_weight(sample_weight, n_samples)
        fitted_target, y_train = self._check_target(y, n_samples, sample_weight)
        tensors, present, y_train, sample_weight = _drop_zero_weights(
            tensors, present, y_train, sample_weight
        )
        check_fit_options(self.inter_missing, self.modality_dropout)
        check_augment(self.augment, tensors)
        check_samples_have_an_expert(present, list(tensors), self.dependencies, self.inter_missing)
        check_callbacks(self.callbacks)
        small = is_small_cohort(len(y_train))
        n_folds = self._n_folds(y_train) if self.early_stopping else None
        specs = resolve_encoders(
            self.encoders, {m: t.shape[1:] for m, t in tensors.items()}, small_cohort=small
        )
        optimizer = self.optimizer
        if optimizer == "auto":
            fits = full_batch_fits(
                specs,
                batch_size=self.batch_size,
                data_parallel=self.accelerator is not None,
                on_disk=any(isinstance(t, LazyRows) for t in tensors.values()),
                stochastic=bool(self.augment) or self.modality_dropout > 0,
            )
            optimizer = auto_optimizer(len(y_train), fits and self._lbfgs_on_small_cohorts)
        fusion = resolve_fusion(
            self.fusion, small_cohort=small, full_batch=is_full_batch(optimizer)
        )
        check_accelerator(self.accelerator, self.mixed_precision)
        device = resolve_device(self.device, self.accelerator)
        options = self._stage_options(fitted_target, y_train, sample_weight)
        kept = (
            experts_to_keep(self, tensors, fitted_target, specs, fusion, n_folds)
            if self.warm_start
            else None
        )

        # All checks passed: only now replace any previous fit. An error past
        # this point (too few samples to split, a diverging loss) puts the
        # previous fit back, so a failed refit never leaves a broken model.
        previous = _fitted_state(self)
        try:
            vars(self).pop("pretrained_experts_", None)
            vars(self).update(fitted_target)
            self.modalities_ = list(tensors)
            self.input_shapes_ = {m: tuple(t.shape[1:]) for m, t in tensors.items()}
            self.missing_rate_ = {
                m: 0.0 if present is None else float(1 - present[:, i].float().mean())
                for i, m in enumerate(tensors)
            }
            self.feature_names_in_ = {m: c for m, c in columns.items() if c is not None}
            self.encoders_ = specs
            self.fusion_ = fusion
            self.optimizer_ = optimizer
            self.device_ = device
            if kept is None:
                seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
                seed = shared_seed(int(seed), self.accelerator)
            else:
                seed = self.seed_
            self.seed_ = seed
            fork_devices = [device.index or 0] if device.type == "cuda" else []
            with (
                torch_threads() as use_threads,
                torch.random.fork_rng(devices=fork_devices),
                cudnn_autotune(device.type == "cuda"),
                cpu_allocator(device),
            ):
                torch.manual_seed(seed)
                self._train(
                    tensors,
                    present,
                    y_train,
                    sample_weight,
                    seed,
                    options,
                    n_folds,
                    kept,
                    use_threads,
                )
        except BaseException:
            _restore_fitted_state(self, previous)
            raise
        return self

    def _train(self, tensors, present, y, sample_weight, seed, options, n_folds, kept, use_threads):
        """Split, train the experts on each split, keep the final (calibrated) module.

        ``kept`` lists, per split, the experts that stage 1 keeps rather
        than trains (``warm_start``); ``use_threads(n)`` sets torch's
        intra-op threads for what follows (see :mod:`sk_i2m2._threads`).
        """
        # Frozen encoders run once here; the experts train on their features.
        # They are pretrained backbones run over every row: work that pays
        # for every thread the fit may use. The set-up around them does not.
        self.frozen_modalities_ = cached_modalities(self)
        use_threads(PARALLEL_STEP_FLOPS if self.frozen_modalities_ else 0.0)
        tensors, frozen = precompute_frozen(self, tensors, present)
        # The presence mask and the sample weights travel with the batches,
        # like modalities (see PRESENT and SAMPLE_WEIGHT in nn.experts).
        if present is not None:
            tensors = {**tensors, PRESENT: present}
        if sample_weight is not None:
            tensors = {
                **tensors,
                SAMPLE_WEIGHT: torch.as_tensor(sample_weight, dtype=torch.float32),
            }
        where = data_device(tensors, self.device_, self.device_memory_budget)
        if self.early_stopping:
            splits = self._early_stopping_splits(y, n_folds, seed)
        else:
            splits = [(np.arange(len(y)), None)]
        n_train = len(splits[0][0])
        self.batch_size_ = (
            self._auto_batch_size(n_train) if self.batch_size == "auto" else int(self.batch_size)
        )
        self.weight_decay_ = (
            auto_weight_decay(n_train, self.optimizer_)
            if self.weight_decay == "auto"
            else float(self.weight_decay)
        )
        self.n_iter_no_change_ = (
            auto_patience(self.optimizer_)
            if self.n_iter_no_change == "auto"
            else int(self.n_iter_no_change)
        )
        self.module_ = None
        modules, nets, held_out = [], [], []
        for i, (train_rows, valid_rows) in enumerate(splits):
            module, stage_nets, valid_ds = self._fit_split(
                tensors,
                y,
                train_rows,
                valid_rows,
                where,
                seed,
                options,
                frozen,
                kept and kept[i],
                use_threads,
            )
            modules.append(module)
            nets.append(stage_nets)
            if valid_ds is not None:
                available = module.availability(valid_ds.X)
                held_out.append(
                    (
                        expert_logits(
                            module,
                            valid_ds.X,
                            device=self.device_,
                            batch_size=max(4 * self.batch_size_, 1024),
                        ),
                        _cpu(available),
                        valid_ds.y.cpu(),
                        _cpu(valid_ds.X.get(SAMPLE_WEIGHT)),
                    )
                )
            if self.interrupted_stage_ is not None:
                break
        self.pretrain_net_, self.finetune_net_ = nets[0]
        self.fold_nets_ = nets if n_folds else None
        if self.warm_start and self.interrupted_stage_ != "pretrain":
            self.pretrained_experts_ = [
                {**(kept[i] if kept else {}), **pretrain.module_.experts}
                for i, (pretrain, _) in enumerate(nets)
            ]
        self.n_folds_ = len(modules)
        self.module_ = modules[0] if len(modules) == 1 else self._fold_ensemble(modules).eval()
        # The work of one row of the fitted model, for the threads of prediction:
        # every fold model's (their features counted in training).
        remember_row_flops(self.module_, self.n_folds_ * row_flops(modules[0]))
        self._calibrate(held_out, options)

    def _fit_split(
        self, tensors, y, train_rows, valid_rows, where, seed, options, frozen, kept, use_threads
    ):
        """Build and train one model; return it, its stage nets and its validation data.

        ``kept`` maps expert names to trained experts whose weights stage 1
        takes instead of training them; ``use_threads`` as in :meth:`_train`.
        """
        train_ds, valid_ds = split_datasets(tensors, y, train_rows, valid_rows, where)
        # Input statistics are computed where the data is (on the GPU when it fits).
        module = build_module_for(
            self,
            {m: t for m, t in train_ds.X.items() if m not in (PRESENT, SAMPLE_WEIGHT)},
            present=train_ds.X.get(PRESENT),
            frozen=frozen,
        ).to(self.device_)
        if not is_full_batch(self.optimizer_):
            # L-BFGS flattens gradients with ``view``, which a channels-last
            # gradient does not allow: it trains in the default layout.
            to_channels_last(module)
        self.expert_names_ = module.expert_names
        first_rows, _ = train_ds[torch.arange(min(2, len(train_ds)))]
        first_rows = {m: t.to(self.device_) for m, t in first_rows.items()}
        use_threads(step_flops(module, first_rows, self.batch_size_, self.device_))
        plan = TrainingPlan.from_params(
            self.get_params(deep=False),
            optimizer=self.optimizer_,
            batch_size=self.batch_size_,
            weight_decay=self.weight_decay_,
            n_iter_no_change=self.n_iter_no_change_,
            device=self.device_,
            seed=seed,
            estimator_name=type(self).__name__,
            **options,
        )
        pretrained = {name: kept[name] for name in module.expert_names if name in (kept or {})}
        for name, expert in pretrained.items():
            module.experts[name].load_state_dict(expert.state_dict())
        pretrain_net, finetune_net = run_stages(
            module, train_ds, valid_ds, plan, pretrained=list(pretrained)
        )
        self.interrupted_stage_ = plan.interrupted_stage
        final_net = finetune_net or pretrain_net
        # skorch wraps the module when compile=True; keep the plain module.
        module = getattr(final_net.module_, "_orig_mod", final_net.module_).eval()
        # Predictions run channels-last, as in a loaded model.
        to_channels_last(module)
        return module, (pretrain_net, finetune_net), valid_ds

    # ------------------------------------------------------------------
    # Prediction

    def _expert_logits(self, X, module=None):
        """Expert outputs (logits) of ``X`` and which experts see which sample, on the CPU.

        Returns ``(logits, available)``: stacked outputs of shape
        ``(n_experts, n_samples, n_outputs)``, 0 where an expert cannot see a
        sample, and a bool mask of shape ``(n_experts, n_samples)`` or
        ``None`` when every expert sees every sample. ``module`` defaults to
        the fitted model; pass ``pretrain_net_.module_`` for the experts as
        trained independently in stage 1.
        """
        check_is_fitted(self, "module_")
        module = self.module_ if module is None else module
        tensors, _, present = check_modalities(X, fitted=self)
        available = None
        if present is not None:
            check_samples_have_an_expert(
                present, self.modalities_, self.dependencies, self.inter_missing
            )
            warn_untrained_null(self, present)
            tensors[PRESENT] = present
            available = module.availability({PRESENT: present})
        batch_size = max(4 * self.batch_size_, 1024)
        with torch_threads() as use_threads:
            use_threads(self._prediction_flops(module, tensors, batch_size))
            # The module alone, not a skorch net: a model restored by ``load`` has no nets.
            logits = expert_logits(
                module,
                tensors,
                device=self.device_,
                batch_size=batch_size,
                memory_budget=self.device_memory_budget,
                mixed_precision=self.mixed_precision,
            )
        return logits, available

    def _prediction_flops(self, module, tensors, batch_size):
        """Forward FLOPs of a batch when predicting ``tensors`` (raw inputs) with ``module``.

        A model with frozen encoders runs pretrained backbones on the raw
        inputs, as :meth:`_train` does first: counted as work for every
        thread the fit may use (counting them would run them once more).
        """
        if self.frozen_modalities_ and self.device_.type == "cpu":
            return PARALLEL_STEP_FLOPS
        n_rows = len(next(iter(tensors.values())))

        def first_rows():  # read only when the module has no count yet (a loaded model)
            rows = np.arange(min(2, n_rows))
            return {m: materialize(take(t, rows)).to(self.device_) for m, t in tensors.items()}

        return step_flops(module, first_rows, min(batch_size, n_rows), self.device_)

    def _stage_module(self, stage):
        """The module of ``stage`` ("final" or "pretrain"); ``None`` for the fitted model."""
        if stage not in ("final", "pretrain"):
            raise ValueError(f"stage must be 'final' or 'pretrain'; got {stage!r}.")
        if stage == "final":
            return None
        check_is_fitted(self, "module_")
        if self.pretrain_net_ is None:
            raise ValueError(
                "stage='pretrain' needs pretrain_net_, which a loaded model does not have."
            )
        if self.fold_nets_:
            return self._fold_ensemble([pretrain.module_ for pretrain, _ in self.fold_nets_])
        return self.pretrain_net_.module_


def _cpu(tensor):
    return None if tensor is None else tensor.cpu()


def _drop_zero_weights(tensors, present, y, sample_weight):
    """The rows of positive weight; ``sample_weight`` None when their weights are equal.

    A row of weight 0 would add nothing to any loss, but it would still
    shape the input statistics, the batches and the validation split;
    dropping it makes a zero weight mean exactly "not in the data". Equal
    weights are the unweighted fit (every loss is a weighted mean).
    """
    if sample_weight is None:
        return tensors, present, y, None
    keep = sample_weight > 0
    if not keep.all():
        rows = np.flatnonzero(keep)
        # take: tensors and lazily read modalities alike.
        tensors = {m: take(t, rows) for m, t in tensors.items()}
        if present is not None:
            present = take(present, rows)
            # As check_modalities reports complete data.
            present = None if bool(present.all()) else present
        y, sample_weight = y[keep], sample_weight[keep]
    if np.all(sample_weight == sample_weight[0]):
        sample_weight = None
    return tensors, present, y, sample_weight


def _fitted_state(estimator):
    """The fitted attributes (public names ending in ``_``) of ``estimator``."""
    return {k: v for k, v in vars(estimator).items() if k.endswith("_") and not k.startswith("_")}


def _restore_fitted_state(estimator, state):
    for key in _fitted_state(estimator):
        delattr(estimator, key)
    vars(estimator).update(state)
