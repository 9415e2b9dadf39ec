"""The two training stages of I2M2, each run by a skorch :class:`StageNet`.

Stage 1 (``pretrain``) trains every expert on its own loss and keeps each
expert's best epoch; stage 2 (``finetune``) trains their product jointly at
a lower learning rate and keeps its best epoch.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import torch
from skorch.callbacks import EarlyStopping
from skorch.helper import predefined_split

from .._data import iterator_for, modality_dataset
from .._device import place
from .._lazy import LazyRows, take
from .._sizing import is_full_batch
from .._warnings import warn_user
from .callbacks import (
    Converged,
    ExpertCheckpoint,
    FiniteLossCheck,
    StageProgressBar,
    callbacks_for_stage,
    interactive_output,
    stopped_by_callback,
)
from .flat_lbfgs import full_batch_optimizer
from .net import ACCELERATED, optimizer_speed_kwargs
from .schedule import lr_schedule_callbacks

if TYPE_CHECKING:  # the outcomes build on the stage nets of this package
    from ..outcomes import StageOptions

__all__ = [
    "LBFGS_OPTIONS",
    "TrainingPlan",
    "StageNets",
    "split_datasets",
    "run_stages",
]


#: ``torch.optim.LBFGS`` settings of a full-batch stage. One epoch is one
#: ``step`` of up to ``max_iter`` iterations, so validation, early stopping
#: and callbacks see the model every 5 iterations; the tolerances end a
#: step once the loss or the step no longer change in float32. Patience
#: counts epochs, so longer epochs train longer: on the small-cohort sets
#: (10 seeds) ``max_iter=10`` or ``20`` evaluated the loss 1.6 to 3 times
#: as often for no better accuracy or log loss, and 2 or 3 stopped before
#: converging (accuracy up to 6 points lower, log loss up to 0.085 higher).
LBFGS_OPTIONS = {
    "max_iter": 5,
    "history_size": 10,
    "line_search_fn": "strong_wolfe",
    "tolerance_grad": 1e-6,
    "tolerance_change": 1e-9,
}


@dataclass(frozen=True)
class TrainingPlan:
    """Everything the stages need from the estimator's parameters and the outcome."""

    lr: float
    finetune_lr: float
    max_epochs: int
    finetune_epochs: int
    batch_size: int
    optimizer: type
    weight_decay: float
    n_iter_no_change: int
    device: torch.device
    seed: int
    # The outcome's part: the stage net class and the criteria
    # (:class:`~sk_i2m2.outcomes.StageOptions`).
    stage: StageOptions
    estimator_name: str = "I2M2Classifier"
    callbacks: object = None
    compile: bool = False
    mixed_precision: bool = False
    verbose: int = 0
    lr_schedule: str = "constant"
    accelerator: object = None
    augment: dict | None = None

    @classmethod
    def from_params(cls, params, **fitted):
        """The plan for an estimator's ``get_params(deep=False)`` and fitted facts.

        ``finetune_lr=None`` becomes ``lr / 10`` and ``finetune_epochs=None``
        becomes ``max_epochs``.
        """
        names = {f.name for f in fields(cls)} - set(fitted)
        plan = {name: params[name] for name in names}
        if plan["finetune_lr"] is None:
            plan["finetune_lr"] = params["lr"] / 10
        if plan["finetune_epochs"] is None:
            plan["finetune_epochs"] = params["max_epochs"]
        return cls(**plan, **fitted)


def split_datasets(tensors, y, train_rows, valid_rows, data_device):
    """Training and validation datasets on ``data_device``.

    A :class:`~sk_i2m2._data.ModalityTensorDataset`: the data is copied once
    to where it lives and the splits are sliced there. With a
    :class:`~sk_i2m2._lazy.LazyRows` modality, a
    :class:`~sk_i2m2._data.LazyModalityDataset` on the host whose lazy
    modalities are views of the split's rows (nothing is read). The target
    keeps the dtype of ``y`` (int64 class codes, float values).
    """
    tensors = {m: t if isinstance(t, LazyRows) else t.to(data_device) for m, t in tensors.items()}
    n = len(y)

    def dataset(rows):
        rows = np.sort(rows)
        if len(rows) == n:
            split = tensors
        else:
            split = {m: take(t, rows) for m, t in tensors.items()}
        return modality_dataset(
            {m: place(t, data_device) for m, t in split.items()},
            torch.as_tensor(y[rows], device=data_device),
        )

    return dataset(train_rows), (dataset(valid_rows) if valid_rows is not None else None)


@dataclass(frozen=True)
class StageNets:
    """The nets of the two stages of one model, and the stage a user interrupted.

    ``finetune_net`` is ``None`` when there is no stage 2 (a single expert,
    ``finetune_epochs=0``, or a user interrupt in stage 1);
    ``interrupted_stage`` is ``None`` unless a user interrupt ended a stage.
    """

    pretrain_net: object
    finetune_net: object = None
    interrupted_stage: str | None = None


def run_stages(module, train_ds, valid_ds, plan, pretrained=()):
    """Train ``module`` in the two stages; return their :class:`StageNets`.

    The experts named in ``pretrained`` are trained already: stage 1 keeps
    them as they are (and is skipped when every expert is).
    """
    patience = plan.n_iter_no_change if valid_ds is not None else None
    # One shuffling stream through both stages.
    generator = torch.Generator().manual_seed(plan.seed)
    iterator = iterator_for(train_ds)
    pretrain_net = _make_net(
        plan,
        generator,
        iterator,
        "pretrain",
        module,
        plan.stage.criteria[0],
        plan.lr,
        plan.max_epochs,
        valid_ds,
        [
            (
                "expert_checkpoint",
                ExpertCheckpoint(
                    patience=patience,
                    threshold=plan.stage.stopping_threshold,
                    pretrained=pretrained,
                ),
            )
        ],
    )
    if set(pretrained) >= set(module.expert_names):
        pretrain_net.initialize()
    elif _run_stage(plan, "pretrain", pretrain_net, train_ds):
        return StageNets(pretrain_net, interrupted_stage="pretrain")
    if len(module.expert_names) == 1 or plan.finetune_epochs == 0:
        return StageNets(pretrain_net)
    stage_callbacks = []
    if valid_ds is not None:
        stage_callbacks.append(
            (
                "early_stopping",
                EarlyStopping(
                    monitor="valid_loss",
                    patience=plan.n_iter_no_change,
                    threshold=1e-4,
                    load_best=True,
                ),
            )
        )
    # A copy, so that pretrain_net keeps the experts as pretrained.
    finetune_net = _make_net(
        plan,
        generator,
        iterator,
        "finetune",
        copy.deepcopy(module),
        plan.stage.criteria[1],
        plan.finetune_lr,
        plan.finetune_epochs,
        valid_ds,
        stage_callbacks,
    )
    interrupted = _run_stage(plan, "finetune", finetune_net, train_ds)
    return StageNets(pretrain_net, finetune_net, "finetune" if interrupted else None)


def _make_net(
    plan, generator, iterator, stage, module, criterion, lr, max_epochs, valid_ds, stage_callbacks
):
    # A NaN loss must raise before early stopping can end the stage quietly,
    # so the check comes first; the user's callbacks come after the stage's own.
    user_callbacks = callbacks_for_stage(plan.callbacks, stage)
    if is_full_batch(plan.optimizer):
        # L-BFGS: its line search sets the step (no learning rate, no
        # schedule); the L2 penalty is part of the loss it minimises, and
        # the stage ends once it has converged. torch's runs as FlatLBFGS.
        optimizer = full_batch_optimizer(plan.optimizer)
        optimizer_kwargs = {f"optimizer__{k}": v for k, v in LBFGS_OPTIONS.items()}
        lr, penalty = 1.0, {"l2": plan.weight_decay}
        schedule = [("converged", Converged())]
    else:
        optimizer = plan.optimizer
        optimizer_kwargs = {
            f"optimizer__{k}": v
            for k, v in optimizer_speed_kwargs(plan.optimizer, plan.device).items()
        }
        optimizer_kwargs["optimizer__weight_decay"] = plan.weight_decay
        penalty = {}
        schedule = lr_schedule_callbacks(plan.lr_schedule, plan.batch_size, user_callbacks)
    callbacks = [
        ("finite_loss", FiniteLossCheck(stage)),
        *stage_callbacks,
        *schedule,
        *user_callbacks,
    ]
    if plan.verbose >= 1 and interactive_output():
        callbacks.append(("progress", StageProgressBar(stage)))
    net_class, net_kwargs = plan.stage.net, {"device": plan.device}
    if plan.accelerator is not None:
        # The accelerator places the module; each process trains on its shard.
        net_class, net_kwargs = ACCELERATED[plan.stage.net], {"device": None}
        net_kwargs.update(
            accelerator=plan.accelerator,
            iterator_train__num_shards=plan.accelerator.num_processes,
            iterator_train__shard=plan.accelerator.process_index,
        )
    return net_class(
        module=module,
        criterion=criterion,
        **{f"criterion__{k}": v for k, v in plan.stage.criterion_kwargs.items()},
        **plan.stage.net_kwargs,
        optimizer=optimizer,
        **optimizer_kwargs,
        **penalty,
        lr=lr,
        max_epochs=max_epochs,
        batch_size=plan.batch_size,
        iterator_train=iterator,
        iterator_train__shuffle=True,
        iterator_train__generator=generator,
        iterator_train__device=plan.device,
        iterator_valid=iterator,
        iterator_valid__batch_size=max(4 * plan.batch_size, 1024),
        iterator_valid__device=plan.device,
        train_split=predefined_split(valid_ds) if valid_ds is not None else None,
        callbacks=callbacks,
        compile=plan.compile,
        mixed_precision=plan.mixed_precision,
        augment=plan.augment,
        **net_kwargs,
        verbose=int(plan.verbose >= 2),
    )


def _run_stage(plan, stage, net, train_ds):
    """Fit ``net`` on ``train_ds``; return whether a user interrupted it."""
    start = time.perf_counter()
    net.fit(train_ds, y=None)
    # skorch ends fit quietly on any KeyboardInterrupt (early stopping
    # raises one too); the checkpoint callbacks have already restored the
    # best weights, so only the user's interrupt needs telling apart.
    interrupted = _interrupted_by_user(net)
    if interrupted:
        warn_user(
            f"Training was interrupted in the {stage} stage (epoch "
            f"{len(net.history)} of {net.max_epochs}). The model keeps the best "
            "weights so far and any later stage is skipped; fit again to train "
            "from scratch."
        )
    if plan.verbose >= 1:
        seconds = time.perf_counter() - start
        print(stage_summary(stage, net, seconds, plan.estimator_name), flush=True)
    return interrupted


def stage_summary(stage, net, seconds, estimator_name="I2M2Classifier"):
    """One line on a finished stage: epochs, time, last train loss, best validation loss."""
    history = net.history
    # An interrupted last epoch has no train loss yet.
    losses = [row["train_loss"] for row in history if "train_loss" in row]
    line = f"[{estimator_name}] {stage}: {len(history)} epochs in {seconds:.1f}s"
    if losses:
        line += f", train loss {losses[-1]:.4f}"
    checkpoint = dict(net.callbacks_).get("expert_checkpoint")
    if checkpoint is not None and any(checkpoint.best_epoch_.values()):
        line += "; best valid loss " + ", ".join(
            f"{name} {checkpoint.best_loss_[name]:.4f} (epoch {epoch})"
            for name, epoch in checkpoint.best_epoch_.items()
            if epoch
        )
        if checkpoint.pretrained:
            line += "; trained before this stage: " + ", ".join(checkpoint.pretrained)
    elif len(history) and "valid_loss" in history[-1]:
        line += f", best valid loss {min(history[:, 'valid_loss']):.4f}"
    return line


def _interrupted_by_user(net):
    """Whether a KeyboardInterrupt other than a stopping callback's ended ``net.fit``."""
    history = net.history
    finished = len(history) >= net.max_epochs and "train_loss" in history[-1]
    return not finished and not stopped_by_callback(net)
