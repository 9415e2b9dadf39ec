"""One fit, top-down: validate -> build and train every split -> result.

:func:`describe_fit` runs every check of a ``fit`` and returns a
:class:`FitDescription`, an immutable record of the fit (data, target,
specs, optimizer, device, splits, training plan); nothing is fitted yet.
:func:`train` builds and trains the model of each split from that record
alone and returns a :class:`FitResult`; the estimator then stores its
fitted attributes in one place (``I2M2Base._store``). Everything that
depends on the target comes from the estimator's outcome
(:mod:`sk_i2m2.outcomes`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.utils import check_random_state

from ._allocator import cpu_allocator
from ._device import cudnn_autotune, data_device, resolve_device, to_channels_last
from ._gc import collector_paused
from ._inference import expert_logits
from ._lazy import LazyRows, materialize, take
from ._missing import check_fit_options, check_samples_have_an_expert
from ._parallel import check_accelerator, shared_seed
from ._sample_weight import check_sample_weight, drop_zero_weights
from ._sizing import (
    auto_lr_schedule,
    auto_optimizer,
    auto_patience,
    auto_weight_decay,
    full_batch_fits,
    is_full_batch,
    is_small_cohort,
)
from ._threads import PARALLEL_STEP_FLOPS, remember_row_flops, row_flops, step_flops, torch_threads
from ._validation import check_modalities
from ._warm_start import experts_to_keep
from .encoders import resolve_encoders
from .fusion import resolve_fusion
from .nn.build import Architecture, build_module_for, cached_modalities, precompute_frozen
from .nn.experts import PRESENT, SAMPLE_WEIGHT
from .training.callbacks import check_callbacks
from .training.linear_experts import l2_grid, solve_into
from .training.stages import TrainingPlan, run_stages, split_datasets

__all__ = ["FitDescription", "FitResult", "describe_fit", "train"]


@dataclass(frozen=True)
class FitDescription:
    """Everything one fit trains from, validated.

    Attributes
    ----------
    tensors : dict
        Modality -> float32 tensor or :class:`~sk_i2m2._lazy.LazyRows`, the
        rows of positive weight.
    present : bool tensor of shape (n_samples, n_modalities) or None
        Which sample has which modality; ``None`` for complete data.
    columns : dict
        Modality -> feature names (``None`` without).
    outcome : Outcome
        The outcome type of the target (:mod:`sk_i2m2.outcomes`).
    target : dict
        The fitted attributes that describe the target (e.g. ``classes_``).
    y : ndarray
        The target as the stage nets train on it.
    sample_weight : ndarray or None
        Weights of the rows; ``None`` when they are all equal.
    architecture : Architecture
        What each model is built from.
    memory_budget : float
        ``device_memory_budget``.
    n_folds : int or None
        Cross-fitting folds; ``None`` for one model.
    splits : tuple
        ``(train_rows, valid_rows)`` of each model (``valid_rows`` ``None``
        without early stopping).
    plan : TrainingPlan
        The stages' settings: optimizer (``"auto"`` resolved), device,
        batch size, weight decay, patience, seed ...
    kept : list of dict or None
        ``warm_start``: per model, the stage-1 experts kept from the
        previous fit.
    linear_l2_grid : tuple of float or None
        L2 coefficients among which the inner folds choose each linear
        expert's (:mod:`~sk_i2m2.training.linear_experts`); ``None`` when
        the linear experts train with the other experts in stage 1.
    kept_l2 : dict
        ``warm_start``: the L2 coefficients of the kept experts.
    small_cohort : bool
        Whether the training rows are a small cohort
        (:func:`~sk_i2m2._sizing.is_small_cohort`).
    """

    tensors: dict
    present: torch.Tensor | None
    columns: dict
    outcome: object
    target: dict
    y: np.ndarray
    sample_weight: np.ndarray | None
    architecture: Architecture
    memory_budget: float
    n_folds: int | None
    splits: tuple
    plan: TrainingPlan
    kept: list | None
    linear_l2_grid: tuple | None = None
    kept_l2: dict | None = None
    small_cohort: bool = False


@dataclass(frozen=True)
class FitResult:
    """What :func:`train` returns.

    Attributes
    ----------
    module : torch.nn.Module
        The fitted model (a fold ensemble with cross-fitting), in eval mode.
    nets : list of tuple
        ``(pretrain_net, finetune_net)`` of each model trained.
    expert_names : list of str
    interrupted_stage : str or None
        The stage a user interrupted, if any (later models are not trained).
    calibration : dict
        The outcome's calibration attributes (``temperature_`` ...).
    expert_l2 : dict
        Expert name -> the L2 coefficient (or weight decay) it trained with.
    l2_grid : tuple or None
        The coefficients the linear experts chose from.
    l2_scores : dict or None
        Linear expert name -> pooled held-out loss at each coefficient.
    """

    module: torch.nn.Module
    nets: list
    expert_names: list
    interrupted_stage: str | None
    calibration: dict
    expert_l2: dict
    l2_grid: tuple | None = None
    l2_scores: dict | None = None


@dataclass(frozen=True)
class _SplitResult:
    module: torch.nn.Module
    nets: tuple
    interrupted_stage: str | None
    held_out: tuple | None
    # The stage-1 experts of a cross-fitted split that ran stage 2, and
    # their validation outputs: the alternative _calibrate weighs.
    pretrain_module: torch.nn.Module | None = None
    held_out_pretrain: tuple | None = None


def describe_fit(estimator, X, y, sample_weight=None):
    """Validate a ``fit`` of ``estimator`` and describe it; change nothing.

    Every check runs here, before any training, so that an invalid input or
    parameter leaves a previous fit untouched. ``sample_weight`` travels
    with the rows (see :data:`~sk_i2m2.nn.experts.SAMPLE_WEIGHT`); rows of
    weight 0 are dropped first (:func:`drop_zero_weights`).
    """
    params = estimator.get_params(deep=False)
    tensors, columns, present = check_modalities(X, encoders=params["encoders"])
    n_samples = len(next(iter(tensors.values())))
    sample_weight = check_sample_weight(sample_weight, n_samples)
    outcome = estimator._target_outcome(y)
    target, y_train = outcome.check_target(y, n_samples, sample_weight)
    tensors, present, y_train, sample_weight = drop_zero_weights(
        tensors, present, y_train, sample_weight
    )
    check_fit_options(params["inter_missing"], params["modality_dropout"])
    check_augment(params["augment"], tensors)
    check_samples_have_an_expert(
        present, list(tensors), params["dependencies"], params["inter_missing"]
    )
    check_callbacks(params["callbacks"])
    small = is_small_cohort(len(y_train), outcome.small_cohort_size)
    n_folds = outcome.n_folds(y_train) if params["early_stopping"] else None
    specs = resolve_encoders(
        params["encoders"], {m: t.shape[1:] for m, t in tensors.items()}, small_cohort=small
    )
    optimizer = _optimizer(params, specs, tensors, small, outcome)
    fusion = resolve_fusion(
        params["fusion"], small_cohort=small, full_batch=is_full_batch(optimizer)
    )
    check_accelerator(params["accelerator"], params["mixed_precision"])
    device = resolve_device(params["device"], params["accelerator"])
    stage_options = outcome.stage_options(target, y_train, sample_weight)
    kept = None
    if params["warm_start"]:
        kept = experts_to_keep(estimator, tensors, target, specs, fusion, n_folds)
    if kept is None:
        seed = check_random_state(params["random_state"]).randint(np.iinfo(np.int32).max)
        seed = shared_seed(int(seed), params["accelerator"])
    else:  # the previous fit's splits, which the kept experts were stopped on
        seed = estimator.seed_
    if params["early_stopping"]:
        splits = outcome.splits(y_train, n_folds, seed, target)
    else:
        splits = [(np.arange(len(y_train)), None)]
    batch_size, weight_decay, patience = _sizes(params, outcome, len(splits[0][0]), optimizer)
    linear_l2_grid = l2_grid(
        params, outcome.lbfgs_on_small_cohorts, optimizer, weight_decay, small, splits
    )
    plan = TrainingPlan.from_params(
        params,
        optimizer=optimizer,
        batch_size=batch_size,
        weight_decay=weight_decay,
        n_iter_no_change=patience,
        lr_schedule=auto_lr_schedule(params, batch_size, len(splits[0][0]), optimizer),
        device=device,
        seed=seed,
        estimator_name=type(estimator).__name__,
        stage=stage_options,
    )
    architecture = Architecture(
        modalities=tuple(tensors),
        specs=specs,
        fusion=fusion,
        n_outputs=outcome.n_outputs(target),
        dependencies=params["dependencies"],
        standardize=params["standardize"],
        inter_missing=params["inter_missing"],
        modality_dropout=params["modality_dropout"],
        frozen_modalities=tuple(cached_modalities(specs, params["augment"])),
    )
    return FitDescription(
        tensors=tensors,
        present=present,
        columns=columns,
        outcome=outcome,
        target=target,
        y=y_train,
        sample_weight=sample_weight,
        architecture=architecture,
        memory_budget=params["device_memory_budget"],
        n_folds=n_folds,
        splits=tuple(splits),
        plan=plan,
        kept=kept,
        linear_l2_grid=linear_l2_grid,
        kept_l2=dict(getattr(estimator, "expert_weight_decay_", {})) if kept else {},
        small_cohort=small,
    )


def _optimizer(params, specs, tensors, small_cohort, outcome):
    """The optimizer class of ``optimizer`` (``"auto"``: L-BFGS where full batches fit)."""
    if params["optimizer"] != "auto":
        return params["optimizer"]
    fits = full_batch_fits(
        specs,
        batch_size=params["batch_size"],
        data_parallel=params["accelerator"] is not None,
        on_disk=any(isinstance(t, LazyRows) for t in tensors.values()),
        stochastic=bool(params["augment"]) or params["modality_dropout"] > 0,
    )
    return auto_optimizer(small_cohort, fits and outcome.lbfgs_on_small_cohorts)


def _sizes(params, outcome, n_train, optimizer):
    """``batch_size``, ``weight_decay`` and ``n_iter_no_change`` with ``"auto"`` resolved."""
    batch_size, weight_decay, patience = (
        params["batch_size"],
        params["weight_decay"],
        params["n_iter_no_change"],
    )
    return (
        outcome.auto_batch_size(n_train, optimizer) if batch_size == "auto" else int(batch_size),
        auto_weight_decay(n_train, optimizer) if weight_decay == "auto" else float(weight_decay),
        (
            auto_patience(optimizer, outcome.full_batch_patience)
            if patience == "auto"
            else int(patience)
        ),
    )


def train(fit):
    """Build and train the model of every split of ``fit``; calibrate; return a :class:`FitResult`.

    Runs with torch's threads chosen for the work (:mod:`sk_i2m2._threads`),
    Python's garbage collector paused on a small cohort
    (:mod:`sk_i2m2._gc`), and a forked random stream seeded with the fit's
    seed, so that the caller's stream is left as it was.
    """
    device = fit.plan.device
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with (
        torch_threads() as use_threads,
        torch.random.fork_rng(devices=fork_devices),
        cudnn_autotune(device.type == "cuda"),
        cpu_allocator(device),
        collector_paused(fit.small_cohort),
    ):
        torch.manual_seed(fit.plan.seed)
        return _train_splits(fit, use_threads)


def _train_splits(fit, use_threads):
    # Frozen encoders run once here; the experts train on their features.
    # They are pretrained backbones run over every row: work that pays
    # for every thread the fit may use. The set-up around them does not.
    use_threads(PARALLEL_STEP_FLOPS if fit.architecture.frozen_modalities else 0.0)
    tensors, frozen = precompute_frozen(
        fit.architecture, fit.tensors, fit.present, device=fit.plan.device
    )
    # The presence mask and the sample weights travel with the batches,
    # like modalities (see PRESENT and SAMPLE_WEIGHT in nn.experts).
    if fit.present is not None:
        tensors = {**tensors, PRESENT: fit.present}
    if fit.sample_weight is not None:
        tensors = {
            **tensors,
            SAMPLE_WEIGHT: torch.as_tensor(fit.sample_weight, dtype=torch.float32),
        }
    where = data_device(tensors, fit.plan.device, fit.memory_budget)
    modules = [_build_module(fit, tensors, rows, where, frozen) for rows, _ in fit.splits]
    names = modules[0].expert_names
    pretrained = [
        {name: expert for name, expert in kept.items() if name in names}
        for kept in fit.kept or [{} for _ in modules]
    ]
    for module, experts in zip(modules, pretrained):
        for name, expert in experts.items():
            module.experts[name].load_state_dict(expert.state_dict())
    solution = None
    if fit.linear_l2_grid is not None:
        solution = solve_into(
            modules,
            tensors,
            fit.y,
            fit.splits,
            fit.plan.stage,
            fit.linear_l2_grid,
            device=fit.plan.device,
            exclude=pretrained[0],
        )
    splits = []
    for module, kept, (train_rows, valid_rows) in zip(modules, pretrained, fit.splits):
        names = list(kept) + (list(solution.l2) if solution else [])
        split = _train_split(
            fit, module, tensors, train_rows, valid_rows, where, names, use_threads
        )
        splits.append(split)
        if split.interrupted_stage is not None:
            break
    module, calibration, final_stage = _calibrate(fit, splits)
    if "expert_weights_" in calibration:
        calibration = dict(calibration)
        module, calibration["expert_weights_"] = _weigh_experts(
            module,
            calibration["expert_weights_"],
            shares_stage_1=final_stage == "pretrain",
            n_outputs=(
                fit.outcome.n_outputs(fit.target) if fit.outcome.expert_weights_per_output else None
            ),
        )
    expert_l2 = {name: fit.plan.weight_decay for name in module.expert_names}
    expert_l2.update({name: fit.kept_l2.get(name, expert_l2[name]) for name in pretrained[0]})
    if solution:
        expert_l2.update(solution.l2)
    return FitResult(
        module=module,
        nets=[split.nets for split in splits],
        expert_names=list(module.expert_names),
        interrupted_stage=splits[-1].interrupted_stage,
        calibration={**calibration, "final_stage_": final_stage},
        expert_l2=expert_l2,
        l2_grid=solution.grid if solution else None,
        l2_scores=solution.held_out_loss if solution else None,
    )


def _build_module(fit, tensors, train_rows, where, frozen):
    """The untrained model of one split, its input scaling fitted on ``train_rows``."""
    train_ds, _ = split_datasets(tensors, fit.y, train_rows, None, where)
    # Input statistics are computed where the data is (on the GPU when it fits).
    return build_module_for(
        fit.architecture,
        {m: t for m, t in train_ds.X.items() if m not in (PRESENT, SAMPLE_WEIGHT)},
        present=train_ds.X.get(PRESENT),
        frozen=frozen,
    ).to(fit.plan.device)


def _calibrate(fit, splits):
    """The fitted model, its calibration attributes and the stage whose experts it holds.

    A cross-fitted model whose folds all ran stage 2, calibrated by expert
    weights (``calibration`` ``"auto"`` or ``"experts"``; a temperature or
    no calibration keeps the fine-tuned product), is calibrated twice:
    with the fine-tuned experts and with the experts as stage 1 left them.
    It keeps the product of lower calibrated loss on the pooled held-out
    rows (``calibration_loss_``). Fine-tuning the product jointly learns how
    the experts combine, which pays where modalities interact; on
    independent views it can fit the training rows' noise instead, and the
    separately trained experts predict better (``benchmarks/small_cohorts.py``).
    """
    candidates = [
        (
            "pretrain" if splits[0].nets[1] is None else "finetune",
            [split.module for split in splits],
            [split.held_out for split in splits if split.held_out is not None],
        )
    ]
    weighs_experts = getattr(fit.outcome, "calibration", None) in ("auto", "experts")
    if (
        fit.n_folds
        and weighs_experts
        and all(split.held_out_pretrain is not None for split in splits)
    ):
        candidates.append(
            (
                "pretrain",
                [split.pretrain_module for split in splits],
                [split.held_out_pretrain for split in splits],
            )
        )
    best = None
    for stage, modules, held_out in candidates:
        module = modules[0] if len(modules) == 1 else fit.outcome.fold_ensemble(modules).eval()
        # The work of one row of the model, for the threads of prediction:
        # every fold model's (their features counted in training).
        remember_row_flops(module, len(modules) * row_flops(modules[0]))
        calibration = fit.outcome.calibrate(
            held_out, fit.plan.stage, lambda module=module: _training_rows(fit, module)
        )
        loss = calibration.get("calibration_loss_")
        if best is None or (loss is not None and loss < best[1].get("calibration_loss_")):
            best = (module, calibration, stage)
        if loss is None:  # the outcome cannot compare products
            break
    return best


def _weigh_experts(module, weights, shares_stage_1, n_outputs=None):
    """``module`` with each expert's logits multiplied by its calibration weights.

    Returns the module and the weights by expert name: a float each, or
    with ``n_outputs`` (an outcome weighed per output column) an array of
    ``n_outputs``; all 1.0 when the calibration fitted none. The weights go
    into the experts' output layers, so the model stays a product of
    experts that predicts, saves and exports as before. A module holding
    the stage-1 experts (``shares_stage_1``), which the stage-1 nets and
    ``warm_start`` keep as trained, is copied first.
    """
    names = list(module.expert_names)
    if not weights:
        weights = [1.0 if n_outputs is None else np.ones(n_outputs) for _ in names]
    weights = {
        name: float(weight) if n_outputs is None else np.asarray(weight, dtype=float)
        for name, weight in zip(names, weights)
    }
    if any(np.any(weight != 1.0) for weight in weights.values()):
        if shares_stage_1:
            module = copy.deepcopy(module)
        module.scale_outputs(weights)
    return module, weights


def _train_split(fit, module, tensors, train_rows, valid_rows, where, pretrained, use_threads):
    """Train the model of one split; its validation rows' expert outputs for the calibration.

    The experts named in ``pretrained`` are trained already (kept by
    ``warm_start`` or solved with the other splits'): stage 1 leaves them as
    they are.
    """
    device, plan = fit.plan.device, fit.plan
    train_ds, valid_ds = split_datasets(tensors, fit.y, train_rows, valid_rows, where)
    if not is_full_batch(fit.plan.optimizer):
        # L-BFGS flattens gradients with ``view``, which a channels-last
        # gradient does not allow: it trains in the default layout.
        to_channels_last(module)
    first_rows, _ = train_ds[torch.arange(min(2, len(train_ds)))]
    first_rows = {m: t.to(device) for m, t in first_rows.items()}
    use_threads(step_flops(module, first_rows, plan.batch_size, device))
    stages = run_stages(module, train_ds, valid_ds, plan, pretrained=pretrained)
    final_net = stages.finetune_net or stages.pretrain_net
    # skorch wraps the module when compile=True; keep the plain module.
    module = getattr(final_net.module_, "_orig_mod", final_net.module_).eval()
    # Predictions run channels-last, as in a loaded model.
    to_channels_last(module)
    held_out = held_out_pretrain = pretrain_module = None
    if valid_ds is not None:
        held_out = _held_out(module, valid_ds, device, plan.batch_size)
        if fit.n_folds and stages.finetune_net is not None:
            # The alternative of keeping the stage-1 experts (see _calibrate).
            pretrain_module = stages.pretrain_net.module_
            pretrain_module = getattr(pretrain_module, "_orig_mod", pretrain_module).eval()
            to_channels_last(pretrain_module)
            held_out_pretrain = _held_out(pretrain_module, valid_ds, device, plan.batch_size)
    return _SplitResult(
        module,
        (stages.pretrain_net, stages.finetune_net),
        stages.interrupted_stage,
        held_out,
        pretrain_module,
        held_out_pretrain,
    )


def _held_out(module, valid_ds, device, batch_size):
    """``(expert_logits, available, y, sample_weight)`` of the validation rows, on the CPU."""
    return (
        expert_logits(module, valid_ds.X, device=device, batch_size=_inference_batch(batch_size)),
        _cpu(module.availability(valid_ds.X)),
        valid_ds.y.cpu(),
        _cpu(valid_ds.X.get(SAMPLE_WEIGHT)),
    )


def _training_rows(fit, module):
    """``(expert_outputs, available, y, sample_weight)`` of every training row under ``module``."""
    tensors = fit.tensors
    if fit.present is not None:
        tensors = {**tensors, PRESENT: fit.present}
    outputs = expert_logits(
        module, tensors, device=fit.plan.device, batch_size=_inference_batch(fit.plan.batch_size)
    )
    available = None if fit.present is None else module.availability({PRESENT: fit.present})
    return outputs, available, fit.y, fit.sample_weight


def _inference_batch(batch_size):
    return max(4 * batch_size, 1024)


def _cpu(tensor):
    return None if tensor is None else tensor.cpu()


def check_augment(augment, tensors):
    """Check the estimator's ``augment``: modalities of ``X`` mapped to shape-keeping callables.

    Each transform is tried on the modality's first two rows (on the CPU)
    before any training: one that fails, or returns a batch of another
    shape, would otherwise train on mismatched inputs or fail mid-fit.
    """
    for name, transform in (augment or {}).items():
        if name not in tensors:
            raise ValueError(
                f"augment names modality {name!r}, which is not in X (X has {sorted(tensors)})."
            )
        if not callable(transform):
            raise TypeError(
                f"augment[{name!r}] must be a callable mapping a batch tensor to a "
                f"batch of the same shape; got {type(transform).__name__}."
            )
        rows = tensors[name]
        batch = materialize(take(rows, np.arange(min(2, len(rows)))))
        try:
            out = transform(batch.clone())
        except Exception as exc:
            raise ValueError(
                f"augment[{name!r}] fails on a batch of modality {name!r} of shape "
                f"{tuple(batch.shape)}: {exc}"
            ) from exc
        if not isinstance(out, torch.Tensor) or out.shape != batch.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"augment[{name!r}] must return a batch of the shape it is given: a batch "
                f"of modality {name!r} of shape {tuple(batch.shape)} came back as {got}."
            )
