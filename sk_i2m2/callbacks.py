"""skorch callbacks used by the staged I2M2 training."""

from __future__ import annotations

import math

from skorch.callbacks import Callback

__all__ = ["ExpertCheckpoint", "FiniteLossCheck"]


class ExpertCheckpoint(Callback):
    """Keep each expert's best epoch on the validation data (stage 1).

    Stage 1 trains all experts side by side with independent losses. This
    callback scores each expert on the validation batches, records
    ``valid_loss_<expert>`` and ``valid_loss_<expert>_best`` in the history,
    keeps an in-memory copy of each expert's weights at its best epoch,
    restores those at the end of training, and stops training once no
    expert has improved for ``patience`` epochs.

    Parameters
    ----------
    patience : int or None, default=None
        Epochs without improvement of any expert before stopping; ``None``
        never stops early.
    threshold : float, default=1e-4
        Relative improvement needed to count as better.

    Attributes
    ----------
    best_epoch_ : dict
        Expert name -> epoch (1-based) whose weights were restored.
    best_loss_ : dict
        Expert name -> best validation loss.
    stopped_early_ : bool
        Whether ``patience`` ended the training.
    """

    def __init__(self, patience=None, threshold=1e-4):
        self.patience = patience
        self.threshold = threshold

    def initialize(self):
        self.best_epoch_ = {}
        self.best_loss_ = {}
        self.stopped_early_ = False
        self._best_state = {}
        self._loss_sum = None
        self._weight_sum = None
        self._count = 0
        return self

    def on_train_begin(self, net, **kwargs):
        self.initialize()
        for name in net.module_.expert_names:
            self.best_loss_[name] = math.inf
            self.best_epoch_[name] = 0

    def on_epoch_begin(self, net, **kwargs):
        self._loss_sum = None
        self._count = 0

    def on_batch_end(self, net, batch, training, y_pred=None, **kwargs):
        if training:
            return
        Xb, y = batch
        # Kept on the device: one host sync per epoch, not per batch.
        available = net.module_.availability(Xb)
        total, weight = (t.detach() for t in net.criterion_.per_expert_sums(y_pred, y, available))
        if self._loss_sum is None:
            self._loss_sum, self._weight_sum = total, weight
        else:
            self._loss_sum, self._weight_sum = self._loss_sum + total, self._weight_sum + weight
        self._count += len(y)

    def on_epoch_end(self, net, **kwargs):
        if not self._count:
            return
        epoch = len(net.history)
        mean_losses = (self._loss_sum / self._weight_sum).tolist()
        for name, loss in zip(net.module_.expert_names, mean_losses):
            improved = loss < self.best_loss_[name] * (1 - self.threshold)
            net.history.record(f"valid_loss_{name}", loss)
            net.history.record(f"valid_loss_{name}_best", improved)
            if improved:
                self.best_loss_[name] = loss
                self.best_epoch_[name] = epoch
                expert = net.module_.experts[name]
                self._best_state[name] = {
                    k: v.detach().clone() for k, v in expert.state_dict().items()
                }
        last_improvement = max(self.best_epoch_.values())
        if self.patience is not None and epoch - last_improvement >= self.patience:
            self.stopped_early_ = True
            raise KeyboardInterrupt  # skorch's way to end fit_loop early

    def on_train_end(self, net, **kwargs):
        for name, state in self._best_state.items():
            net.module_.experts[name].load_state_dict(state)


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
