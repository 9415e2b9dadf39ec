"""Learning rate of large batches: linear scaling with a linear warm-up.

At a fixed number of epochs, a batch ``k`` times larger takes ``k`` times
fewer optimizer steps. The defaults (``lr``, ``max_epochs``,
``n_iter_no_change``) are tuned for batches of up to
:data:`REFERENCE_BATCH_SIZE` (the cap of ``batch_size="auto"``); larger
batches at the same learning rate end their epoch budget undertrained. The
recipe of Goyal et al. (2017, "Accurate, Large Minibatch SGD") restores
the progress made per epoch: multiply the learning rate by
``k = min(batch_size, n_train) / REFERENCE_BATCH_SIZE`` and ramp it up
linearly from the unscaled rate over the first epochs, so that the large
steps start once the optimizer's moment estimates have settled. Epoch budgets and early-stopping
patience stay counted in epochs, which the scaling makes comparable across
batch sizes.

Measured with ``benchmarks/large_batch.py`` (k-space digits, 1190 training
rows, batch 1024 against 32, three seeds): the constant rate lost 2.6 pt of
test accuracy, the linear rule 0.6 pt at no extra fit time. The square-root
rule (``lr * sqrt(k)``, the SDE-derived rule for Adam) lost 1.0 pt at equal
epochs and needed ``sqrt(k)`` times the epochs, twice the time, to lose
0.4 pt; counting the early-stopping patience in steps instead of epochs did
not help.

Small cohorts use the same rule the other way round. Below 256 training
rows, where ``n_train // 16`` batches would hold fewer than 16 rows, the
default ``lr`` is tuned for batches of 16; ``batch_size="auto"`` takes 64
there and ``lr_schedule="auto"`` scales the rate from a reference batch
of 16 (``k = 4``, no warm-up): four times fewer steps per epoch for the
same progress (measured in ``benchmarks/small_conv_regimes.py``; see
:func:`sk_i2m2._sizing.auto_lr_schedule`).
"""

from __future__ import annotations

import math

import torch
from skorch.callbacks import LRScheduler

from .._sizing import SMALL_COHORT_REFERENCE_BATCH_SIZE

__all__ = ["REFERENCE_BATCH_SIZE", "LargeBatchLR", "WarmupFactor", "lr_schedule_callbacks"]

#: Largest batch size the default learning rate and epoch budgets are tuned
#: for: the cap of ``batch_size="auto"``. Batches up to this size train at
#: ``lr`` unchanged.
REFERENCE_BATCH_SIZE = 256


class WarmupFactor:
    """Multiplier of the base learning rate at optimizer step ``t`` (from 0).

    Rises linearly from 1 at step 0 to ``scale`` at ``warmup_steps``, then
    stays at ``scale``. A plain object rather than a closure, so that a
    fitted net (which holds its scheduler) can be pickled.
    """

    def __init__(self, scale, warmup_steps):
        self.scale = float(scale)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        if step >= self.warmup_steps:
            return self.scale
        return 1.0 + (self.scale - 1.0) * step / self.warmup_steps

    def __repr__(self):
        return f"WarmupFactor(scale={self.scale:g}, warmup_steps={self.warmup_steps})"


class LargeBatchLR(LRScheduler):
    """Scale the learning rate with the batch size, with a linear warm-up.

    A skorch :class:`~skorch.callbacks.LRScheduler` running a
    :class:`torch.optim.lr_scheduler.LambdaLR` that steps after every
    training batch. With ``k = min(batch_size, n_train) / reference_batch_size``
    (the batch a step actually sees, so a batch larger than the data counts
    as the whole data), the learning rate of the net's optimizer is ``lr`` at
    the first step, rises linearly to ``k * lr`` (``sqrt(k) * lr`` with
    ``scaling="sqrt"``) over the first ``warmup_epochs`` epochs, and stays
    there. With ``k <= 1`` it leaves the learning rate at ``lr``.

    ``I2M2Classifier(lr_schedule="auto")`` adds it with its defaults to
    both stages when ``batch_size`` exceeds 256, and with a reference batch
    of 16 and no warm-up to the small-cohort batches of
    ``batch_size="auto"`` (fewer than 256 training rows with a mini-batch
    optimizer). Passed in ``callbacks`` (with ``lr_schedule="constant"``,
    or in place of the automatic one, which a user ``LRScheduler``
    replaces), it can be configured.

    The learning rate of every training batch is recorded in the batch's
    history row under ``event_name``.

    Parameters
    ----------
    reference_batch_size : int, default=256
        Batch size at which ``lr`` is used as is.
    scaling : {"linear", "sqrt"}, default="linear"
        Rule of the factor: ``k`` (Goyal et al. 2017) or ``sqrt(k)`` (the
        square-root rule derived for Adam; at equal epochs it trained less
        far in ``benchmarks/large_batch.py``).
    warmup_epochs : int, default=5
        Length of the ramp in epochs (0: none); capped at a tenth of the net's
        ``max_epochs`` (at least one epoch), so a short run is not spent
        warming up.
    event_name : str, default="batch_lr"
        History key, per batch, of the learning rate the batch was trained with.

    Attributes
    ----------
    scale_ : float
        The factor (``k`` or ``sqrt(k)``, at least 1) applied after the warm-up.
    warmup_steps_ : int
        Number of optimizer steps of the ramp.
    """

    def __init__(
        self,
        reference_batch_size=REFERENCE_BATCH_SIZE,
        scaling="linear",
        warmup_epochs=5,
        event_name="batch_lr",
    ):
        super().__init__(
            policy=torch.optim.lr_scheduler.LambdaLR,
            monitor=None,
            event_name=event_name,
            step_every="batch",
        )
        self.reference_batch_size = reference_batch_size
        self.scaling = scaling
        self.warmup_epochs = warmup_epochs

    @property
    def kwargs(self):
        # The only argument of the LambdaLR; skorch's default would pass every attribute.
        return {"lr_lambda": WarmupFactor(self.scale_, self.warmup_steps_)}

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        # skorch passes the training data given to fit: with the stage's
        # predefined validation split, all of it is trained on.
        dataset = net.get_dataset(X, y)
        steps_per_epoch = len(net.get_iterator(dataset, training=True))
        batch = min(net.batch_size, len(dataset))
        if self.scaling not in ("linear", "sqrt"):
            raise ValueError(f"scaling must be 'linear' or 'sqrt'; got {self.scaling!r}.")
        k = max(1.0, batch / self.reference_batch_size)
        self.scale_ = k if self.scaling == "linear" else math.sqrt(k)
        epochs = min(self.warmup_epochs, max(1, net.max_epochs // 10))
        self.warmup_steps_ = epochs * steps_per_epoch
        super().on_train_begin(net, X=X, y=y, **kwargs)

    def _get_scheduler(self, net, policy, **scheduler_kwargs):
        # Always from step 0. skorch would resume from the number of epochs
        # in the history, which for a scheduler stepped per batch is no
        # step count; a resumed fit (LoadInitState) warms up again instead.
        return policy(net.optimizer_, **scheduler_kwargs)

    def _record_last_lr(self, net, kind):
        # The learning rate the batch just trained with, read from the optimizer.
        if self.event_name is not None:
            net.history.record_batch(self.event_name, net.optimizer_.param_groups[0]["lr"])


def lr_schedule_callbacks(lr_schedule, batch_size, user_callbacks):
    """Callbacks that carry out ``lr_schedule`` in one stage: a list of ``(name, callback)``.

    ``"small_cohort"`` (what ``"auto"`` becomes for the small-cohort batches
    of ``batch_size="auto"``, see :func:`sk_i2m2._sizing.auto_lr_schedule`)
    scales the rate linearly from a batch of
    :data:`~sk_i2m2._sizing.SMALL_COHORT_REFERENCE_BATCH_SIZE`. Otherwise
    empty for ``"constant"`` and for batches of at most
    :data:`REFERENCE_BATCH_SIZE` (which therefore train exactly as without
    the schedule). Empty too when the stage has a user
    :class:`~skorch.callbacks.LRScheduler` among ``user_callbacks``: that
    scheduler then owns the learning rate, starting from ``lr``.
    """
    for entry in user_callbacks:
        callback = entry[1] if isinstance(entry, tuple) else entry
        if isinstance(callback, LRScheduler):
            return []
    if lr_schedule == "small_cohort":
        # No warm-up: measured, the ramp cost log loss and bought nothing
        # at k = 4 (benchmarks/small_conv_regimes.py).
        small = LargeBatchLR(SMALL_COHORT_REFERENCE_BATCH_SIZE, warmup_epochs=0)
        return [("small_cohort_lr", small)]
    if lr_schedule == "constant" or batch_size <= REFERENCE_BATCH_SIZE:
        return []
    return [("large_batch_lr", LargeBatchLR())]
