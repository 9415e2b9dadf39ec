"""The skorch nets that run one I2M2 training stage (classes, labels, Gaussian)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping

import torch
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import BatchScoring, Callback, EpochScoring, LRScheduler, PrintLog
from skorch.dataset import get_len
from skorch.hf import AccelerateMixin
from torch.optim.lr_scheduler import ReduceLROnPlateau

from .._data import ModalityTensorDataset
from ..nn.experts import SAMPLE_WEIGHT
from ..nn.product import combine_gaussian, product_label_proba, product_mean, product_proba

__all__ = [
    "StageNetMixin",
    "StageNet",
    "StageNetMultilabel",
    "StageNetRegressor",
    "AcceleratedStageNet",
    "AcceleratedStageNetMultilabel",
    "AcceleratedStageNetRegressor",
    "optimizer_speed_kwargs",
    "is_data_parallel",
    "plain_module",
]


def plain_module(module):
    """The I2M2 module inside ``torch.compile`` and ``DistributedDataParallel`` wrappers."""
    module = _uncompiled(module)
    if isinstance(module, torch.nn.parallel.DistributedDataParallel):
        return _uncompiled(module.module)
    return module


def is_data_parallel(module):
    """Whether a net's ``module_`` is trained by ``DistributedDataParallel``."""
    return isinstance(_uncompiled(module), torch.nn.parallel.DistributedDataParallel)


def _uncompiled(module):
    # torch.compile's wrapper keeps the module it compiled as ``_orig_mod``;
    # attributes set on the wrapper would not reach that module's forward.
    return getattr(module, "_orig_mod", module)


class StageNetMixin:
    """The extension points of a stage net, for any outcome type.

    Mix it in front of a skorch net class (``class MyStageNet(StageNetMixin,
    NeuralNetRegressor)``) to get what every I2M2 stage needs: the batch's
    availability mask and sample weights passed to the criterion, the L2
    penalty of full-batch training (``l2``), train-time ``augment``,
    bfloat16 ``mixed_precision`` and losses kept on the device
    (``defer_loss_sync``). An outcome type adds its own
    ``evaluation_step`` (how its experts' outputs are combined) and
    ``_target_dtype``.
    """

    # dtype of a target passed as an array (e.g. by a scorer).
    _target_dtype = torch.long

    def __init__(
        self,
        *args,
        mixed_precision=False,
        defer_loss_sync=None,
        augment=None,
        l2=0.0,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.mixed_precision = mixed_precision
        self.defer_loss_sync = defer_loss_sync
        self.augment = augment
        self.l2 = l2

    @property
    def _default_callbacks(self):
        # skorch's epoch log, formatted only when it is shown.
        return [
            (name, _QuietPrintLog() if name == "print_log" else callback)
            for name, callback in super()._default_callbacks
        ]

    def _set_training(self, training=True):
        # skorch sets train or eval mode before every forward pass, walking
        # every submodule; with L-BFGS that is every evaluation of the loss,
        # and on small experts the walk costs as much as the pass. skorch has
        # no hook for this, so its private method is overridden: the walk is
        # skipped while the module is still in the mode this net last set.
        if getattr(self, "_mode_set", None) == training and self.module_.training == training:
            return
        super()._set_training(training)
        self._mode_set = training

    def train_step_single(self, batch, **fit_params):
        if self.augment:
            Xi, yi = batch
            Xi = {**Xi, **{name: f(Xi[name]) for name, f in self.augment.items()}}
            batch = (Xi, yi)
        return super().train_step_single(batch, **fit_params)

    def __getstate__(self):
        state = super().__getstate__()
        # The predefined validation split is training data. A fitted net is
        # pickled when a parallel worker returns a fitted estimator (e.g.
        # ``cross_validate(return_estimator=True)``) or a user pickles one;
        # with the split it would grow with the data set. The unpickled net
        # predicts and keeps its history; fitting it again takes a new split.
        state["train_split"] = None
        # The penalised parameters are collected again when needed; pickled
        # here they would bypass skorch's handling of the module's device.
        state.pop("_penalised", None)
        return state

    def get_loss(self, y_pred, y_true, X=None, training=False):
        # The batch's sample weights travel in it under SAMPLE_WEIGHT (see nn.experts).
        if not isinstance(X, Mapping):
            return self.criterion_(y_pred, y_true)
        module = plain_module(self.module_)
        loss = self.criterion_(
            y_pred,
            y_true,
            module.availability(X),
            sample_weight=X.get(SAMPLE_WEIGHT),
        )
        if training and self.l2:
            loss = loss + 0.5 * self.l2 * module.squared_weight_norm(self._penalised_for(module))
        return loss

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        super().on_train_begin(net, X=X, y=y, **kwargs)
        # L-BFGS evaluates the penalty several times per epoch and updates
        # the parameters in place, so the penalised ones are collected once
        # per fit; a module built anew (set_params) is collected again.
        if self.l2:
            module = plain_module(self.module_)
            self._penalised = (module, module.penalised_parameters())

    def _penalised_for(self, module):
        module_seen, penalised = getattr(self, "_penalised", (None, None))
        return penalised if module_seen is module else None

    def get_dataset(self, dataset, y=None):
        if isinstance(dataset, Mapping):  # e.g. a scorer's X taken from the stage's dataset
            X = {name: torch.as_tensor(value) for name, value in dataset.items()}
            y = torch.as_tensor(y, dtype=self._target_dtype) if y is not None else None
            return ModalityTensorDataset(X, y)
        return super().get_dataset(dataset, y)

    def infer(self, x, **fit_params):
        if not self.mixed_precision:
            return super().infer(x, **fit_params)
        device_type = torch.device(self.device).type
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return super().infer(x, **fit_params).float()

    def _defers_loss_sync(self):
        if self.defer_loss_sync is None:
            return torch.device(self.device).type == "cuda" and not any(
                _reads_batch_losses(callback) for _, callback in self.callbacks_
            )
        return self.defer_loss_sync

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        """One pass of training or validation over ``iterator``, as in skorch.

        With deferred loss sync (``defer_loss_sync``), the batch losses stay
        on the device while the pass runs and reach the history's batch
        rows, as floats, in one transfer when it ends; otherwise skorch's
        own loop runs.
        """
        if iterator is None or not self._defers_loss_sync():
            super().run_single_epoch(iterator, training, prefix, step_fn, **fit_params)
            return
        # skorch's loop restated: its run_single_epoch records
        # ``step["loss"].item()`` after every batch, a host sync per step on
        # CUDA, and skorch has no hook for how a batch's loss is recorded.
        losses = []
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            losses.append(step["loss"].detach())
            batch_size = get_len(batch[0]) if isinstance(batch, (tuple, list)) else get_len(batch)
            self.history.record_batch(prefix + "_batch_size", batch_size)
            self.notify("on_batch_end", batch=batch, training=training, **step)
        if losses:
            rows = self.history[-1]["batches"][-len(losses) :]
            for row, loss in zip(rows, torch.stack(losses).tolist()):
                row[prefix + "_loss"] = loss
        self.history.record(prefix + "_batch_count", len(losses))


class _QuietPrintLog(PrintLog):
    """skorch's ``PrintLog``, which formats an epoch's table only when it is shown.

    skorch's ``PrintLog`` tabulates every epoch's row, and only then drops
    it when ``verbose=0`` prints it nowhere: a full-batch epoch of a small
    cohort costs less than the formatting. A ``sink`` other than ``print``
    gets every row, as in skorch.
    """

    def on_epoch_end(self, net, **kwargs):
        if self.sink is print and not net.verbose:
            self.first_iteration_ = False  # as skorch's, which skips the header then
            return
        super().on_epoch_end(net, **kwargs)


class StageNet(StageNetMixin, NeuralNetClassifier):
    """skorch ``NeuralNetClassifier`` for one stage of I2M2's categorical experts.

    The net of class labels; :class:`StageNetMultilabel` is its sibling
    for multilabel targets. It uses skorch's own training loop (restated only where batch losses
    stay on the device, see ``defer_loss_sync``); only extension points
    change:

    - ``get_loss`` also passes the criterion which experts see each sample
      (``I2M2Module.availability``), so that an expert is scored only on
      samples that have its modality, and the batch's sample weights (the
      :data:`~sk_i2m2.nn.experts.SAMPLE_WEIGHT` entry of the batch dict,
      which travels with the rows like a modality) as ``sample_weight``.
      skorch's epoch ``train_loss``/``valid_loss`` average these batch
      losses weighted by batch size, which is the weighted mean over the
      whole validation split when it fits in one validation batch (at
      least 1024 rows).
    - Predictions are those of the product of the stage's experts
      (``predict_nonlinearity`` is :func:`~sk_i2m2.nn.product.product_proba`),
      with classes ``0..n_classes-1``, so skorch's ``EpochScoring`` and any
      scikit-learn scorer score the model the stage is training. ``X`` may
      be the stage's dataset or a dict of modality tensors.
    - With ``defer_loss_sync`` (on by default on CUDA), ``run_single_epoch``
      keeps the batch losses, which skorch records with ``loss.item()``
      after every step, on the device until the training (or validation)
      pass ends, and then writes them to the history's batch rows as floats
      in one transfer: ``item()`` after every step would stall the GPU once
      per step. Every callback's ``on_epoch_end`` sees the same floats as
      without it. By default the losses are not deferred when a callback
      may read a batch's loss from the history in ``on_batch_end``
      (skorch's ``ProgressBar``, an ``LRScheduler`` stepping
      ``ReduceLROnPlateau`` per batch, a logger with ``log_on_batch_end``,
      any callback of unknown behaviour there); on the CPU ``item()`` costs
      nothing and skorch's loop runs unchanged.
    - skorch's default ``valid_acc`` scoring is left out: it predicts the
      validation rows a second time every epoch. Add
      ``EpochScoring("accuracy", name="valid_acc")`` to ``callbacks`` for
      that column.
    - ``mixed_precision=True`` runs the forward pass under bfloat16
      autocast (no gradient scaler is needed for bfloat16); the loss is
      computed in float32.
    - ``augment`` transforms modalities of each *training* batch
      (``train_step_single``), on the device the batch was delivered to;
      validation and prediction batches are never augmented.
    - ``l2`` adds ``l2 / 2`` times the squared norm of the training
      experts' weight matrices (``I2M2Module.squared_weight_norm``) to the
      training loss, for optimizers that take no ``weight_decay`` of their
      own (L-BFGS): each expert is then an L2-penalised model, e.g. a
      linear expert the multinomial logistic regression of
      ``LogisticRegression(C=1 / (n_train * l2))``. Validation losses are
      not penalised.

    Parameters
    ----------
    *args, **kwargs
        As for ``skorch.NeuralNetClassifier``.
    mixed_precision : bool, default=False
        bfloat16 autocast of the forward pass.
    defer_loss_sync : bool or None, default=None
        Keep batch losses on the device until the end of each training or
        validation pass; ``None`` means on CUDA, unless a callback may read
        a batch's loss from the history in ``on_batch_end``.
    augment : dict or None, default=None
        Modality -> callable applied to that modality of every training batch.
    l2 : float, default=0.0
        Coefficient of the L2 penalty added to the training loss.
    """

    def __init__(self, *args, predict_nonlinearity=product_proba, **kwargs):
        super().__init__(*args, predict_nonlinearity=predict_nonlinearity, **kwargs)

    @property
    def _default_callbacks(self):
        # One pass over the validation rows per epoch, for the losses: skorch's
        # default ``valid_acc`` scoring predicts them a second time, which on
        # a small cohort costs as much as the training step itself.
        return [(name, cb) for name, cb in super()._default_callbacks if name != "valid_acc"]


class StageNetMultilabel(StageNet):
    """:class:`StageNet` for multilabel targets: per-label Bernoulli experts.

    The experts' outputs are per-label log-odds and the targets float
    indicators (or soft targets) in [0, 1]; ``predict_proba`` gives the
    product's probability of each label
    (``predict_nonlinearity`` is :func:`~sk_i2m2.nn.product.product_label_proba`)
    and ``predict`` 0/1 indicators (probability above 0.5). Everything else
    is :class:`StageNet`'s.
    """

    _target_dtype = torch.float32

    def __init__(self, *args, predict_nonlinearity=product_label_proba, **kwargs):
        super().__init__(*args, predict_nonlinearity=predict_nonlinearity, **kwargs)

    def predict(self, X):
        return (self.predict_proba(X) > 0.5).astype(int)


class StageNetRegressor(StageNetMixin, NeuralNetRegressor):
    """skorch ``NeuralNetRegressor`` for one stage of I2M2's Gaussian experts.

    The regressor's sibling of :class:`StageNet`, with the same extension
    points (availability passed to the criterion, deferred loss sync,
    ``mixed_precision``). Its predictions are those of the product of the
    stage's experts: ``evaluation_step`` combines them with
    :func:`~sk_i2m2.nn.product.combine_gaussian` (leaving out experts that
    cannot see a sample), ``forward`` returns the product's means and
    log-variances and ``predict`` its means
    (``predict_nonlinearity`` is :func:`~sk_i2m2.nn.product.product_mean`),
    of shape ``(n_samples, n_targets)``, in the standardised units the
    stage trains on; so skorch's ``EpochScoring`` (e.g. ``"r2"``) scores
    the model the stage is training.

    Parameters
    ----------
    *args, **kwargs
        As for ``skorch.NeuralNetRegressor``.
    mixed_precision : bool, default=False
        bfloat16 autocast of the forward pass.
    defer_loss_sync : bool or None, default=None
        Keep batch losses on the device until the end of each training or
        validation pass (see :class:`StageNet`).
    l2 : float, default=0.0
        Coefficient of the L2 penalty added to the training loss (see
        :class:`StageNet`).
    """

    _target_dtype = torch.float32

    def __init__(self, *args, predict_nonlinearity=product_mean, **kwargs):
        super().__init__(*args, predict_nonlinearity=predict_nonlinearity, **kwargs)

    def evaluation_step(self, batch, training=False):
        outputs = super().evaluation_step(batch, training=training)
        Xi = batch[0]
        available = plain_module(self.module_).availability(Xi) if isinstance(Xi, Mapping) else None
        return combine_gaussian(outputs, available)


class _AcceleratedStageMixin(AccelerateMixin):
    """A stage net trained data-parallel by an ``accelerate.Accelerator``.

    skorch's ``AccelerateMixin`` prepares the module (``DistributedDataParallel``
    across processes) and optimizer, and runs the backward pass and gradient
    accumulation through the accelerator. Two of its choices do not suit
    the stage's batches and are replaced:

    - Training batches are sharded by the :class:`~sk_i2m2._data.BatchSlicer`
      itself (``num_shards``/``shard``): every process draws the same
      permutation from the same seed and takes every ``num_shards``-th
      batch, so the processes see disjoint batches and the same number of
      them (``accelerate.prepare`` handles only torch ``DataLoader``).
    - Every process scores the whole validation split instead of gathering
      the predictions of a shard: the processes hold the same weights (DDP
      averages the gradients), so their validation losses agree. Each
      batch's validation loss (and ``ExpertCheckpoint``'s per-expert
      sums) is still averaged over the processes, so that early stopping
      and the per-expert checkpoints decide alike even where devices round
      differently: a process that stopped alone would leave the others
      waiting in the next gradient all-reduce.
    """

    def validation_step(self, batch, **fit_params):
        step = super().validation_step(batch, **fit_params)
        step["loss"] = self.accelerator.reduce(step["loss"].detach(), "mean")
        return step

    def _initialize_accelerator(self):
        # The mixin prepares the criterion too, and on CPUs accelerate wraps
        # any module in DDP, which refuses one without trainable parameters,
        # as the stage losses are.
        criteria = self._criteria
        self._criteria = [
            name
            for name in criteria
            if any(p.requires_grad for p in getattr(self, name + "_").parameters())
        ]
        try:
            return super()._initialize_accelerator()
        finally:
            self._criteria = criteria

    def on_train_end(self, net, **kwargs):
        # Unwrapped in partial_fit instead: the net's hook runs before the
        # callbacks', and EarlyStopping(load_best=True) restores a state
        # dict taken from the wrapped module.
        pass

    def partial_fit(self, *args, **kwargs):
        try:
            return super().partial_fit(*args, **kwargs)
        finally:
            if self.unwrap_after_train:
                self._unwrap_accelerator()

    # The stage net's own iterator and evaluation, not the mixin's: batches
    # are sharded by BatchSlicer, and every process scores the whole split.
    def get_iterator(self, dataset, training=False):
        return super(AccelerateMixin, self).get_iterator(dataset, training=training)

    def evaluation_step(self, batch, training=False):
        return super(AccelerateMixin, self).evaluation_step(batch, training=training)

    def _defers_loss_sync(self):
        return False


class AcceleratedStageNet(_AcceleratedStageMixin, StageNet):
    """:class:`StageNet` trained data-parallel by an ``accelerate.Accelerator``."""


class AcceleratedStageNetMultilabel(_AcceleratedStageMixin, StageNetMultilabel):
    """:class:`StageNetMultilabel` trained data-parallel by an ``accelerate.Accelerator``."""


class AcceleratedStageNetRegressor(_AcceleratedStageMixin, StageNetRegressor):
    """:class:`StageNetRegressor` trained data-parallel by an ``accelerate.Accelerator``."""


#: The data-parallel variant of each stage net.
ACCELERATED = {
    StageNet: AcceleratedStageNet,
    StageNetMultilabel: AcceleratedStageNetMultilabel,
    StageNetRegressor: AcceleratedStageNetRegressor,
}


def _reads_batch_losses(callback):
    """Whether ``callback`` may read a batch's loss from the history in ``on_batch_end``.

    Deferred batch losses reach the history only when the pass ends, so a
    net defers them by default only if no callback may need them earlier.
    A callback without ``on_batch_end`` cannot; skorch's scoring callbacks
    and :class:`~sk_i2m2.training.callbacks.ExpertCheckpoint` read the
    step's outputs instead; an ``LRScheduler`` reads a batch score only to
    step ``ReduceLROnPlateau`` per batch, and skorch's loggers only with
    ``log_on_batch_end``. Any other callback might.
    """
    # Imported here: the callbacks module imports this one.
    from .callbacks import ExpertCheckpoint

    if type(callback).on_batch_end is Callback.on_batch_end:
        return False
    if isinstance(callback, (EpochScoring, BatchScoring, ExpertCheckpoint)):
        return False
    if isinstance(callback, LRScheduler):
        # Set in on_train_begin, before the first pass.
        plateau = isinstance(getattr(callback, "lr_scheduler_", None), ReduceLROnPlateau)
        return callback.step_every == "batch" and plateau
    return getattr(callback, "log_on_batch_end", True) is not False


def optimizer_speed_kwargs(optimizer, device):
    """Fastest multi-tensor implementation ``optimizer`` offers on ``device``.

    Fused kernels (one kernel for the whole update) where torch has them for
    the device: on CUDA, and on the CPU for Adam, AdamW, SGD and Adagrad.
    There the fused AdamW step takes a third of the ``foreach`` one's time
    on a small cohort's fold model and about a quarter on 4 million
    parameters (``python -m benchmarks.step_kernels``).
    Otherwise ``foreach`` (one kernel per group of parameters instead of
    one per parameter); empty for optimizers that take neither.
    """
    try:
        accepted = inspect.signature(optimizer).parameters
    except (TypeError, ValueError):
        return {}
    if "fused" in accepted and _fuses_on(optimizer, device.type):
        return {"fused": True}
    if "foreach" in accepted:
        return {"foreach": True}
    return {}


@functools.cache
def _fuses_on(optimizer, device_type):
    """Whether ``optimizer(..., fused=True)`` accepts parameters on ``device_type``.

    torch refuses the option on a device without the kernel (the CPU in
    older releases): one optimizer over a one-element tensor tells.
    """
    if device_type == "cuda":
        return True
    try:
        optimizer([torch.zeros(1, device=device_type, requires_grad=True)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True
