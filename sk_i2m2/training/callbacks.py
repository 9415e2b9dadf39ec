"""skorch callbacks of the staged I2M2 training, and user callbacks per stage."""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Mapping

from skorch.callbacks import Callback, Checkpoint, EarlyStopping, LoadInitState, TrainEndCheckpoint
from tqdm.auto import tqdm

from ..nn.experts import SAMPLE_WEIGHT
from .net import is_data_parallel, plain_module

__all__ = [
    "Converged",
    "ExpertCheckpoint",
    "FiniteLossCheck",
    "StageProgressBar",
    "STAGES",
    "check_callbacks",
    "callbacks_for_stage",
    "interactive_output",
    "stopped_by_callback",
]

#: The training stages, in order; keys of a per-stage ``callbacks`` dict.
STAGES = ("pretrain", "finetune")


class ExpertCheckpoint(Callback):
    """Early stopping and best-epoch checkpoints of each expert (stage 1).

    Stage 1 trains all experts side by side with independent losses, as if
    each were trained alone; so each also stops alone. This callback scores
    each expert on the validation batches (weighted by the batches' sample
    weights, if any: the criterion's ``per_expert_sums`` gives exact
    weighted means over the whole split), records ``valid_loss_<expert>``
    and ``valid_loss_<expert>_best`` in the history, and keeps an in-memory
    copy of each expert's weights at its best epoch (its lowest validation
    loss). An expert whose loss has not fallen below its best by more than
    ``threshold`` (relative) for ``patience`` epochs stops, as
    scikit-learn's ``MLPClassifier`` counts ``n_iter_no_change`` against
    ``tol``: it is no longer run (the module's ``stopped`` experts), so the
    stage's ``train_loss`` and ``valid_loss`` sum the experts still
    training from then on. The stage ends when every expert has stopped,
    and each expert's best weights are restored.

    Under data-parallel training (``DistributedDataParallel``, which needs
    every parameter in every step) a stopped expert keeps running, but its
    later epochs are not scored and its best weights are restored all the
    same, so the model is the one a single process would keep.

    Parameters
    ----------
    patience : int or None, default=None
        Epochs without improvement before an expert stops; ``None`` never
        stops early.
    threshold : float, default=1e-4
        Relative improvement on the best loss that restarts the count of
        ``patience`` epochs; any lower loss is checkpointed (the outcome's
        ``StageOptions.stopping_threshold`` in a fit).
    pretrained : collection of str, default=()
        Experts trained before this stage (the estimator's ``warm_start``):
        they are stopped from the start and keep their weights.

    Attributes
    ----------
    best_epoch_ : dict
        Expert name -> epoch (1-based) whose weights were restored; 0 for a
        pretrained expert.
    improved_epoch_ : dict
        Expert name -> last epoch (1-based) whose loss improved on the best
        by more than ``threshold``: ``patience`` counts from it.
    best_loss_ : dict
        Expert name -> best validation loss (``inf`` for a pretrained expert).
    stopped_epoch_ : dict
        Expert name -> last epoch (1-based) it trained in, for the experts
        that ``patience`` stopped; 0 for a pretrained expert.
    stopped_early_ : bool
        Whether ``patience`` ended the training (every expert stopped);
        see :func:`stopped_by_callback`.
    """

    def __init__(self, patience=None, threshold=1e-4, pretrained=()):
        self.patience = patience
        self.threshold = threshold
        self.pretrained = pretrained

    def initialize(self):
        self.best_epoch_ = {}
        self.improved_epoch_ = {}
        self.best_loss_ = {}
        self.stopped_epoch_ = {}
        self.stopped_early_ = False
        self._best_state = {}
        self._loss_sum = None
        self._weight_sum = None
        self._count = 0
        return self

    def __getstate__(self):
        # The best weights are in the net once training ends; pickling a
        # fitted net need not carry a second copy of every expert.
        return {**vars(self), "_best_state": {}}

    def on_train_begin(self, net, **kwargs):
        self.initialize()
        module = plain_module(net.module_)
        for name in module.expert_names:
            self.best_loss_[name] = math.inf
            self.best_epoch_[name] = 0
            self.improved_epoch_[name] = 0
        for name in self.pretrained:
            self.stopped_epoch_[name] = 0
            # Restored at the end even where data-parallel training ran it.
            self._best_state[name] = _copy_state(module.experts[name])
        module.stopped = (
            frozenset() if is_data_parallel(net.module_) else frozenset(self.pretrained)
        )

    def on_epoch_begin(self, net, **kwargs):
        self._loss_sum = None
        self._count = 0

    def on_batch_end(self, net, batch, training, y_pred=None, **kwargs):
        if training:
            return
        Xb, y = batch
        # Kept on the device: one host sync per epoch, not per batch.
        available = plain_module(net.module_).availability(Xb)
        sums = net.criterion_.per_expert_sums(
            y_pred, y, available, sample_weight=Xb.get(SAMPLE_WEIGHT)
        )
        total, weight = (t.detach() for t in sums)
        if self._loss_sum is None:
            self._loss_sum, self._weight_sum = total, weight
        else:
            self._loss_sum, self._weight_sum = self._loss_sum + total, self._weight_sum + weight
        self._count += len(y)

    def on_epoch_end(self, net, **kwargs):
        if not self._count:
            return
        epoch = len(net.history)
        loss_sum, weight_sum = self._loss_sum, self._weight_sum
        accelerator = getattr(net, "accelerator", None)
        if accelerator is not None:  # the same decisions in every process
            loss_sum = accelerator.reduce(loss_sum, "mean")
            weight_sum = accelerator.reduce(weight_sum, "mean")
        mean_losses = (loss_sum / weight_sum).tolist()
        module = plain_module(net.module_)
        for name, loss in zip(module.expert_names, mean_losses):
            if name in self.stopped_epoch_:
                continue
            best = self.best_loss_[name]
            # Relative to |best|: a Gaussian NLL (the regressor's) can be negative.
            if math.isinf(best) or loss < best - self.threshold * abs(best):
                self.improved_epoch_[name] = epoch
            net.history.record(f"valid_loss_{name}", loss)
            net.history.record(f"valid_loss_{name}_best", loss < best)
            if loss < best:
                self.best_loss_[name] = loss
                self.best_epoch_[name] = epoch
                self._best_state[name] = _copy_state(module.experts[name])
            if self.patience is not None and epoch - self.improved_epoch_[name] >= self.patience:
                self.stopped_epoch_[name] = epoch
        if not is_data_parallel(net.module_):
            module.stopped = frozenset(self.stopped_epoch_)
        if len(self.stopped_epoch_) == len(module.expert_names):
            self.stopped_early_ = True
            raise KeyboardInterrupt  # skorch's way to end fit_loop early

    def on_train_end(self, net, **kwargs):
        module = plain_module(net.module_)
        module.stopped = frozenset()
        for name, state in self._best_state.items():
            module.experts[name].load_state_dict(state)


class Converged(Callback):
    """End a full-batch stage once an epoch no longer lowers the training loss.

    On all training rows an L-BFGS epoch starts where the last one ended,
    so two epochs with the same training loss (to ``tol``, relative) mean
    that the optimizer has converged: every later epoch would return at
    once. Early stopping on a validation loss would notice only
    ``n_iter_no_change`` epochs later. The callbacks that keep best
    epochs (:class:`ExpertCheckpoint`, ``EarlyStopping(load_best=True)``)
    restore their weights as usual when the stage ends.

    Parameters
    ----------
    tol : float, default=1e-6
        Relative change of the epoch training loss below which the stage
        has converged.

    Attributes
    ----------
    stopped_early_ : bool
        Whether convergence ended the stage; see :func:`stopped_by_callback`.
    """

    def __init__(self, tol=1e-6):
        self.tol = tol

    def initialize(self):
        self.stopped_early_ = False
        return self

    def on_train_begin(self, net, **kwargs):
        self.stopped_early_ = False  # a net fitted again starts unstopped

    def on_epoch_end(self, net, **kwargs):
        losses = net.history[-2:, "train_loss"] if len(net.history) >= 2 else []
        if len(losses) == 2 and abs(losses[1] - losses[0]) <= self.tol * abs(losses[0]):
            self.stopped_early_ = True
            raise KeyboardInterrupt  # skorch's way to end fit_loop early


def stopped_by_callback(net):
    """Whether a callback of ``net`` ended its last ``fit`` before ``max_epochs``.

    A skorch callback ends training by raising ``KeyboardInterrupt``, which
    ``fit`` swallows like a user's Ctrl-C. To be told apart from the user,
    a callback that stops training sets a ``stopped_early_`` attribute to
    ``True`` before raising, as :class:`ExpertCheckpoint` and
    :class:`Converged` do (and resets it when training begins). skorch's
    own ``EarlyStopping``, which records no such flag, is recognised too.
    """
    return any(
        getattr(callback, "stopped_early_", False)
        or (isinstance(callback, EarlyStopping) and _early_stopping_fired(callback))
        for _, callback in net.callbacks_
    )


def _early_stopping_fired(callback):
    # The one read of skorch internals: skorch lacks a hook for a callback to
    # end training other than raising KeyboardInterrupt (no stop flag on the
    # net, no exception of its own that fit could tell from Ctrl-C), and its
    # EarlyStopping raises when its undocumented count of epochs without
    # improvement, misses_, reaches patience, recording nothing else.
    return callback.misses_ >= callback.patience


def _copy_state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class FiniteLossCheck(Callback):
    """Stop training with an error once a loss is NaN or infinite.

    A diverged network keeps producing NaN: continuing wastes the rest of
    the run and leaves a model that predicts nothing useful. The check runs
    once per epoch on the epoch losses skorch has already recorded, so it
    adds no device synchronisation.

    Parameters
    ----------
    stage : str, default="training"
        Name of the training stage, used in the error message.

    Raises
    ------
    FloatingPointError
        At the end of the first epoch whose training or validation loss is
        not finite.
    """

    def __init__(self, stage="training"):
        self.stage = stage

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        for key in ("train_loss", "valid_loss"):
            if key in row and not math.isfinite(row[key]):
                raise FloatingPointError(
                    f"The {self.stage} stage diverged: {key} is {row[key]} in epoch "
                    f"{len(net.history)}. Lower the learning rate (lr={net.lr:g}), "
                    "keep standardize=True, or check the inputs for extreme values."
                )


class StageProgressBar(Callback):
    """One tqdm bar for a training stage: epochs done, losses, best epoch.

    It advances once per epoch (never waiting on the device mid-epoch) and
    shows the last train and validation losses and the epoch with the best
    validation loss so far. In a notebook it is a widget (``tqdm.auto``).

    Parameters
    ----------
    stage : str, default="training"
        Label of the bar.
    file : file-like or None, default=None
        Where to draw; ``None`` is standard error.
    """

    def __init__(self, stage="training", file=None):
        self.stage = stage
        self.file = file

    def on_train_begin(self, net, **kwargs):
        self.pbar_ = tqdm(
            total=net.max_epochs, desc=self.stage, unit="epoch", file=self.file, dynamic_ncols=True
        )

    def on_epoch_end(self, net, **kwargs):
        row = net.history[-1]
        postfix = {key: f"{row[key]:.4f}" for key in ("train_loss", "valid_loss") if key in row}
        best = [i + 1 for i, r in enumerate(net.history) if r.get("valid_loss_best")]
        if best:
            postfix["best_epoch"] = best[-1]
        self.pbar_.set_postfix(postfix, refresh=False)
        self.pbar_.update()

    def on_train_end(self, net, **kwargs):
        self.pbar_.close()

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("pbar_", None)  # a tqdm bar does not pickle
        return state


def interactive_output():
    """Whether progress bars will be seen: a terminal or a Jupyter kernel."""
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) or "ipykernel" in sys.modules


def check_callbacks(callbacks):
    """Validate an estimator's ``callbacks`` parameter (before any training).

    A list (or ``None``) applies to every stage; a dict maps stage names
    (:data:`STAGES`) to lists. Entries are skorch callbacks or
    ``(name, callback)`` pairs.
    """
    if callbacks is None:
        return
    if isinstance(callbacks, Mapping):
        unknown = [stage for stage in callbacks if stage not in STAGES]
        if unknown:
            raise ValueError(
                f"callbacks has stage {unknown[0]!r}; the stages are {list(STAGES)} "
                "(pass a list to use the callbacks in every stage)."
            )
        lists = list(callbacks.values())
    else:
        lists = [callbacks]
    for entries in lists:
        for entry in entries:
            callback = entry[1] if isinstance(entry, tuple) and len(entry) == 2 else entry
            if not isinstance(callback, Callback):
                raise TypeError(
                    "callbacks must hold skorch callbacks or (name, callback) pairs; got "
                    f"{type(callback).__name__}."
                )


def callbacks_for_stage(callbacks, stage):
    """Fresh copies of the user's callbacks that apply to ``stage``.

    Each stage gets its own instances (shallow copies: parameters such as a
    logger's writer are shared, state is not), so the two stage nets never
    share callback state and the user's objects stay untouched. Checkpoint
    files are prefixed with the stage name (``pretrain_params.pt``,
    ``finetune_params.pt``), so both stages can checkpoint to, and resume
    from, one directory.
    """
    if callbacks is None:
        return []
    entries = callbacks.get(stage, []) if isinstance(callbacks, Mapping) else callbacks
    fresh = []
    for entry in entries:
        if isinstance(entry, tuple):
            fresh.append((entry[0], _copy_for_stage(entry[1], stage)))
        else:
            fresh.append(_copy_for_stage(entry, stage))
    return fresh


def _copy_for_stage(callback, stage):
    callback = copy.copy(callback)
    if isinstance(callback, (Checkpoint, TrainEndCheckpoint)):
        callback.fn_prefix = f"{stage}_{callback.fn_prefix}"
    if isinstance(callback, LoadInitState):
        callback.checkpoint = _copy_for_stage(callback.checkpoint, stage)
    return callback
