"""Batched inference of a fitted I2M2 module."""

from __future__ import annotations

import torch

from ._allocator import cpu_allocator
from ._data import iterator_for, modality_dataset
from ._device import data_device, place

__all__ = ["expert_logits"]


def expert_logits(module, tensors, *, device, batch_size, memory_budget=0.5, mixed_precision=False):
    """Stacked expert logits ``(n_experts, n_samples, n_classes)`` on the CPU.

    ``tensors`` maps modality (and the presence-mask key, if any) to CPU
    tensors or :class:`~sk_i2m2._lazy.LazyRows`. As in training, the whole
    input goes to the GPU once when it fits ``memory_budget``; otherwise
    batches are streamed to ``device`` (read and densified one at a time for
    lazy modalities).
    """
    where = data_device(tensors, device, memory_budget)
    dataset = modality_dataset({m: place(t, where) for m, t in tensors.items()})
    batches = iterator_for(dataset)(dataset, batch_size, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(mixed_precision))
    module.eval()
    with torch.no_grad(), autocast, cpu_allocator(device):
        # Outputs stay on the device until the end: one transfer, no wait per batch.
        return torch.cat([module(**Xb).float() for Xb, _ in batches], dim=1).cpu()
