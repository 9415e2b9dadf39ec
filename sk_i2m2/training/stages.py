"""The two training stages of I2M2, each run by a skorch :class:`StageNet`.

Stage 1 (``pretrain``) trains every expert on its own loss and keeps each
expert's best epoch; stage 2 (``finetune``) trains their product jointly at
a lower learning rate and keeps its best epoch.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit
from sklearn.utils.class_weight import compute_class_weight
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
from .net import ACCELERATED, optimizer_speed_kwargs
from .schedule import lr_schedule_callbacks

__all__ = [
    "LBFGS_OPTIONS",
    "TrainingPlan",
    "class_weight_tensor",
    "label_weight_tensor",
    "validation_split",
    "fold_splits",
    "split_datasets",
    "run_stages",
]


#: ``torch.optim.LBFGS`` settings of a full-batch stage. One epoch is one
#: ``step`` of up to ``max_iter`` iterations, so validation, early stopping
#: and callbacks see the model every 20 iterations; the tolerances end a
#: step once the loss or the step no longer change in float32.
LBFGS_OPTIONS = {
    "max_iter": 5,
    "history_size": 10,
    "line_search_fn": "strong_wolfe",
    "tolerance_grad": 1e-6,
    "tolerance_change": 1e-9,
}


@dataclass
class TrainingPlan:
    """Everything the stages need from the estimator's parameters."""

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
    # The target's part (the estimator's ``_stage_options``): the stage net
    # class and its extra arguments, the stage-1 and stage-2 criteria and
    # their arguments.
    net: type
    net_kwargs: dict
    criteria: tuple
    criterion_kwargs: dict
    estimator_name: str = "I2M2Classifier"
    callbacks: object = None
    compile: bool = False
    mixed_precision: bool = False
    verbose: int = 0
    lr_schedule: str = "constant"
    accelerator: object = None
    augment: dict | None = None
    interrupted_stage: str | None = field(default=None, init=False)

    @classmethod
    def from_params(cls, params, **fitted):
        """The plan for an estimator's ``get_params(deep=False)`` and fitted facts.

        ``finetune_lr=None`` becomes ``lr / 10`` and ``finetune_epochs=None``
        becomes ``max_epochs``.
        """
        names = {f.name for f in fields(cls) if f.init} - set(fitted)
        plan = {name: params[name] for name in names}
        if plan["finetune_lr"] is None:
            plan["finetune_lr"] = params["lr"] / 10
        if plan["finetune_epochs"] is None:
            plan["finetune_epochs"] = params["max_epochs"]
        return cls(**plan, **fitted)


def class_weight_tensor(class_weight, classes, y_encoded, sample_weight=None):
    """Loss weights of the classes for ``class_weight`` (``None`` without weights).

    ``"balanced"`` uses the class totals of ``sample_weight``. For a
    multilabel ``y_encoded`` (2-D) see :func:`label_weight_tensor`.
    """
    if class_weight is None:
        return None
    if y_encoded.ndim == 2:
        return label_weight_tensor(class_weight, y_encoded, sample_weight)
    if isinstance(class_weight, list):
        raise ValueError(
            "class_weight is a list, which is for multilabel y (one dict per label); "
            "for class labels pass a dict or 'balanced'."
        )
    if isinstance(class_weight, dict):
        unknown = [c for c in class_weight if c not in set(classes)]
        if unknown:
            raise ValueError(f"class_weight names class {unknown[0]!r}, not in y.")
    if isinstance(class_weight, str) and sample_weight is not None:
        # compute_class_weight's "balanced" rule, n / (n_classes * count),
        # with weighted totals (its sample_weight is newer than our floor).
        totals = np.bincount(y_encoded, weights=sample_weight, minlength=len(classes))
        if (totals == 0).any():
            raise ValueError("class_weight='balanced' needs a positive weight in every class.")
        weights = totals.sum() / (len(classes) * totals)
    else:
        weights = compute_class_weight(class_weight, classes=classes, y=classes[y_encoded])
    return torch.as_tensor(weights, dtype=torch.float32)


def label_weight_tensor(class_weight, y, sample_weight=None):
    """Per-label weights of negatives and positives, shape ``(2, n_labels)``, for multilabel ``y``.

    Each label is a binary outcome with its own class weights, as
    scikit-learn weighs the outputs of a multi-output target:
    ``"balanced"`` gives label ``l``'s positives ``n / (2 * n_pos)`` and its
    negatives ``n / (2 * n_neg)`` (counts weighted by ``sample_weight``; a
    soft target ``t`` counts ``t`` positive and ``1 - t`` negative); a
    label without positives or without negatives gets weights 1, as
    ``compute_class_weight`` gives a single class. A list holds one dict
    ``{0: w_neg, 1: w_pos}`` per label (missing keys weigh 1).
    """
    n_labels = y.shape[1]
    weights = np.ones((2, n_labels))
    if isinstance(class_weight, str) and class_weight == "balanced":
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        positives = w @ y.astype(np.float64)
        negatives = w.sum() - positives
        both = (positives > 0) & (negatives > 0)
        weights[0, both] = w.sum() / (2 * negatives[both])
        weights[1, both] = w.sum() / (2 * positives[both])
    elif isinstance(class_weight, list) and len(class_weight) == n_labels:
        for label, entry in enumerate(class_weight):
            if not isinstance(entry, dict) or set(entry) - {0, 1}:
                raise ValueError(
                    f"class_weight[{label}] must be a dict with keys 0 and/or 1 (the "
                    f"weights of label {label}'s negatives and positives); got {entry!r}."
                )
            for value, weight in entry.items():
                weights[value, label] = weight
    else:
        raise ValueError(
            "For multilabel y, class_weight is 'balanced' or a list of one dict "
            f"{{0: w_neg, 1: w_pos}} per label ({n_labels} labels); got {class_weight!r}."
        )
    return torch.as_tensor(weights, dtype=torch.float32)


def fold_splits(y, n_folds, seed):
    """Train and held-out rows of ``n_folds`` inner folds: stratified for class labels."""
    folds = (StratifiedKFold if y.ndim == 1 else KFold)(n_folds, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros(len(y)), y))


def validation_split(y, classes, validation_fraction, seed):
    """Train and validation rows of the encoded labels ``y``.

    Stratified when every class has two samples; otherwise random, with a
    warning naming the rare class (one of ``classes``). ``classes=None``
    (a continuous target) and multilabel rows (2-D ``y``): random.
    """
    at_random = classes is None or y.ndim == 2
    n, n_classes = len(y), (1 if at_random else len(classes))
    n_valid = max(math.ceil(validation_fraction * n), n_classes)
    if n - n_valid < 2:
        raise ValueError(
            f"Too few samples ({n}) for a validation split of "
            f"validation_fraction={validation_fraction}; pass "
            "early_stopping=False to train on all samples."
        )
    if at_random:
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


def run_stages(module, train_ds, valid_ds, plan, pretrained=()):
    """Train ``module`` in the two stages; return ``(pretrain_net, finetune_net)``.

    ``finetune_net`` is ``None`` when there is no stage 2 (a single expert,
    ``finetune_epochs=0``, or a user interrupt in stage 1). A user interrupt
    sets ``plan.interrupted_stage``. The experts named in ``pretrained``
    are trained already: stage 1 keeps them as they are (and is skipped
    when every expert is).
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
        plan.criteria[0],
        plan.lr,
        plan.max_epochs,
        valid_ds,
        [("expert_checkpoint", ExpertCheckpoint(patience=patience, pretrained=pretrained))],
    )
    if set(pretrained) >= set(module.expert_names):
        pretrain_net.initialize()
    else:
        _run_stage(plan, "pretrain", pretrain_net, train_ds)
    if (
        len(module.expert_names) == 1
        or plan.finetune_epochs == 0
        or plan.interrupted_stage is not None
    ):
        return pretrain_net, None
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
        plan.criteria[1],
        plan.finetune_lr,
        plan.finetune_epochs,
        valid_ds,
        stage_callbacks,
    )
    _run_stage(plan, "finetune", finetune_net, train_ds)
    return pretrain_net, finetune_net


def _make_net(
    plan, generator, iterator, stage, module, criterion, lr, max_epochs, valid_ds, stage_callbacks
):
    # A NaN loss must raise before early stopping can end the stage quietly,
    # so the check comes first; the user's callbacks come after the stage's own.
    user_callbacks = callbacks_for_stage(plan.callbacks, stage)
    if is_full_batch(plan.optimizer):
        # L-BFGS: its line search sets the step (no learning rate, no
        # schedule); the L2 penalty is part of the loss it minimises, and
        # the stage ends once it has converged.
        optimizer_kwargs = {f"optimizer__{k}": v for k, v in LBFGS_OPTIONS.items()}
        lr, penalty = 1.0, {"l2": plan.weight_decay}
        schedule = [("converged", Converged())]
    else:
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
    net_class, net_kwargs = plan.net, {"device": plan.device}
    if plan.accelerator is not None:
        # The accelerator places the module; each process trains on its shard.
        net_class, net_kwargs = ACCELERATED[plan.net], {"device": None}
        net_kwargs.update(
            accelerator=plan.accelerator,
            iterator_train__num_shards=plan.accelerator.num_processes,
            iterator_train__shard=plan.accelerator.process_index,
        )
    return net_class(
        module=module,
        criterion=criterion,
        **{f"criterion__{k}": v for k, v in plan.criterion_kwargs.items()},
        **plan.net_kwargs,
        optimizer=plan.optimizer,
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
    start = time.perf_counter()
    net.fit(train_ds, y=None)
    # skorch ends fit quietly on any KeyboardInterrupt (early stopping
    # raises one too); the checkpoint callbacks have already restored the
    # best weights, so only the user's interrupt needs telling apart.
    if _interrupted_by_user(net):
        plan.interrupted_stage = stage
        warn_user(
            f"Training was interrupted in the {stage} stage (epoch "
            f"{len(net.history)} of {net.max_epochs}). The model keeps the best "
            "weights so far and any later stage is skipped; fit again to train "
            "from scratch."
        )
    if plan.verbose >= 1:
        seconds = time.perf_counter() - start
        print(stage_summary(stage, net, seconds, plan.estimator_name), flush=True)


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
            line += "; kept from the previous fit: " + ", ".join(checkpoint.pretrained)
    elif len(history) and "valid_loss" in history[-1]:
        line += f", best valid loss {min(history[:, 'valid_loss']):.4f}"
    return line


def _interrupted_by_user(net):
    """Whether a KeyboardInterrupt other than a stopping callback's ended ``net.fit``."""
    history = net.history
    finished = len(history) >= net.max_epochs and "train_loss" in history[-1]
    return not finished and not stopped_by_callback(net)
