"""The skorch net that runs one I2M2 training stage."""

from __future__ import annotations

import inspect

import torch
from skorch import NeuralNet
from skorch.dataset import get_len


class StageNet(NeuralNet):
    """skorch ``NeuralNet`` for I2M2's experts, with two changes for speed.

    The criterion receives, besides the stacked expert logits and the
    targets, which experts see each sample (``I2M2Module.availability``),
    so that an expert is scored only on samples that have its modality.

    - Batch losses stay on the device until the epoch ends and are then
      written to ``history`` in one transfer: skorch's default loop calls
      ``loss.item()`` after every batch, which stalls a GPU once per step.
      Per-batch entries in ``history`` are the same floats as with skorch,
      available from ``on_epoch_end`` on.
    - ``mixed_precision=True`` runs the forward pass under bfloat16
      autocast (no gradient scaler is needed for bfloat16); the loss is
      computed in float32.

    Parameters
    ----------
    *args, **kwargs
        As for ``skorch.NeuralNet``.
    mixed_precision : bool, default=False
        bfloat16 autocast of the forward pass.
    """

    def __init__(self, *args, mixed_precision=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.mixed_precision = mixed_precision

    def get_loss(self, y_pred, y_true, X=None, training=False):
        available = self.module_.availability(X) if isinstance(X, dict) else None
        return self.criterion_(y_pred, y_true, available)

    def infer(self, x, **fit_params):
        if not self.mixed_precision:
            return super().infer(x, **fit_params)
        device_type = torch.device(self.device).type
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return super().infer(x, **fit_params).float()

    def run_single_epoch(self, iterator, training, prefix, step_fn, **fit_params):
        if iterator is None:
            return
        losses = []
        for batch in iterator:
            self.notify("on_batch_begin", batch=batch, training=training)
            step = step_fn(batch, **fit_params)
            losses.append(step["loss"].detach())
            Xb, yb = batch
            self.history.record_batch(prefix + "_batch_size",
                                      get_len(yb if yb is not None else Xb))
            self.notify("on_batch_end", batch=batch, training=training, **step)
        if losses:
            rows = self.history[-1]["batches"][-len(losses):]
            for row, value in zip(rows, torch.stack(losses).tolist()):
                row[prefix + "_loss"] = value
        self.history.record(prefix + "_batch_count", len(losses))


def optimizer_speed_kwargs(optimizer, device):
    """Fastest multi-tensor implementation ``optimizer`` offers on ``device``.

    Fused kernels on CUDA, otherwise ``foreach`` (one kernel per group of
    parameters instead of one per parameter); empty for optimizers that
    take neither.
    """
    try:
        accepted = inspect.signature(optimizer).parameters
    except (TypeError, ValueError):
        return {}
    if device.type == "cuda" and "fused" in accepted:
        return {"fused": True}
    if "foreach" in accepted:
        return {"foreach": True}
    return {}
