"""I2M2Base: the target-agnostic machinery of the I2M2 estimators.

Parameters, nested encoder parameters, the fit (validate -> build and
train -> store, see :mod:`sk_i2m2._fit`) and batched expert outputs.
Everything that depends on the target is the estimator's outcome type
(``_outcome_type``, one of :mod:`sk_i2m2.outcomes`).
"""

from __future__ import annotations

import inspect
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._fit import describe_fit, train
from ._inference import expert_logits
from ._lazy import materialize, take
from ._missing import check_samples_have_an_expert, warn_untrained_null
from ._persistence import SaveLoadMixin
from ._registry import REGISTRY
from ._threads import PARALLEL_STEP_FLOPS, step_flops, torch_threads
from ._validation import check_modalities
from .encoders import nested_encoder_params, set_nested_encoder_params
from .fusion import FusionSpec
from .nn.build import Architecture
from .nn.experts import PRESENT

__all__ = ["I2M2Base"]


class I2M2Base(SaveLoadMixin, BaseEstimator):
    """Base class of the I2M2 estimators; not for direct use.

    ``__init__`` stores the shared parameters (documented once, in
    :mod:`sk_i2m2._docstrings`). scikit-learn reads the parameters from the
    class's ``__init__`` signature, so a subclass with parameters or
    defaults of its own declares it in full and calls this one. A subclass
    names its outcome type (``_outcome_type``, an
    :class:`~sk_i2m2.outcomes.Outcome` class) and defines a public ``fit``
    that calls :meth:`_fit`; every subclass is registered by class name,
    which is how ``load`` finds it.
    """

    #: The :class:`~sk_i2m2.outcomes.Outcome` class of the estimator's targets.
    _outcome_type = None

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

    @staticmethod
    def shared_arguments(arguments):
        """The arguments of :meth:`I2M2Base.__init__` among a subclass's ``locals()``.

        A subclass declares every parameter in its own signature, as
        scikit-learn requires, and passes the shared ones on with
        ``super().__init__(**I2M2Base.shared_arguments(locals()))``.
        """
        names = list(inspect.signature(I2M2Base.__init__).parameters)[1:]
        return {name: arguments[name] for name in names}

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

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        REGISTRY.register("estimator")(cls)

    # ------------------------------------------------------------------
    # The outcome

    def _outcome_params(self):
        return {
            "estimator_name": type(self).__name__,
            **{name: getattr(self, name) for name in self._outcome_type.parameters},
        }

    def _target_outcome(self, y):
        """The outcome of a fit on the target ``y``."""
        return self._outcome_type.for_target(y, **self._outcome_params())

    def _fitted_outcome(self):
        """The outcome of the fitted model."""
        return self._outcome_type.for_fitted(_fitted_state(self), **self._outcome_params())

    def _architecture(self):
        """What the fitted model's module is built from (to rebuild a saved model)."""
        return Architecture(
            modalities=tuple(self.modalities_),
            specs=self.encoders_,
            fusion=self.fusion_,
            n_outputs=self._fitted_outcome().n_outputs(_fitted_state(self)),
            dependencies=self.dependencies,
            standardize=self.standardize,
            inter_missing=self.inter_missing,
            modality_dropout=self.modality_dropout,
            frozen_modalities=tuple(self.frozen_modalities_),
        )

    # ------------------------------------------------------------------
    # Fit

    def _fit(self, X, y, sample_weight=None):
        """The public ``fit`` of the estimators: validate, build and train, store.

        Every check runs before any training, and the fitted attributes are
        stored only once training has succeeded, so an error (invalid
        input, too few samples to split, a diverging loss) leaves a
        previous fit as it was.
        """
        fit = describe_fit(self, X, y, sample_weight)
        result = train(fit)
        self._store(fit, result)
        return self

    def _store(self, fit, result):
        """Set every fitted attribute of the fit described by ``fit`` and trained into ``result``."""
        nets = result.nets
        present = fit.present
        fitted = {
            **fit.target,
            "modalities_": list(fit.tensors),
            "input_shapes_": {m: tuple(t.shape[1:]) for m, t in fit.tensors.items()},
            "missing_rate_": {
                m: 0.0 if present is None else float(1 - present[:, i].float().mean())
                for i, m in enumerate(fit.tensors)
            },
            "feature_names_in_": {m: c for m, c in fit.columns.items() if c is not None},
            "encoders_": fit.architecture.specs,
            "fusion_": fit.architecture.fusion,
            "optimizer_": fit.plan.optimizer,
            "device_": fit.plan.device,
            "seed_": fit.plan.seed,
            "frozen_modalities_": list(fit.architecture.frozen_modalities),
            "batch_size_": fit.plan.batch_size,
            "weight_decay_": fit.plan.weight_decay,
            "expert_weight_decay_": result.expert_l2,
            "weight_decay_grid_": result.l2_grid,
            "weight_decay_scores_": result.l2_scores,
            "n_iter_no_change_": fit.plan.n_iter_no_change,
            "expert_names_": result.expert_names,
            "interrupted_stage_": result.interrupted_stage,
            "pretrain_net_": nets[0][0],
            "finetune_net_": nets[0][1],
            "fold_nets_": nets if fit.n_folds else None,
            "n_folds_": len(nets),
            "module_": result.module,
            **result.calibration,
        }
        if self.warm_start and result.interrupted_stage != "pretrain":
            fitted["pretrained_experts_"] = [
                {**(fit.kept[i] if fit.kept else {}), **pretrain.module_.experts}
                for i, (pretrain, _) in enumerate(nets)
            ]
        for name in _fitted_state(self).keys() - fitted.keys():
            delattr(self, name)
        for name, value in fitted.items():
            setattr(self, name, value)

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
        inputs, as the fit does first: counted as work for every
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
            modules = [pretrain.module_ for pretrain, _ in self.fold_nets_]
            return self._fitted_outcome().fold_ensemble(modules)
        return self.pretrain_net_.module_


def _fitted_state(estimator):
    """The fitted attributes (public names ending in ``_``) of ``estimator``."""
    return {k: v for k, v in vars(estimator).items() if k.endswith("_") and not k.startswith("_")}
