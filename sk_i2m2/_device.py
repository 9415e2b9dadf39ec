"""Device choice and placement: where the model trains and where its data lives."""

from __future__ import annotations

import contextlib

import torch

from ._lazy import LazyRows
from ._parallel import worker_cuda_index
from .nn.encoder_modules import ConvNet

__all__ = ["resolve_device", "data_device", "place", "to_channels_last", "cudnn_autotune"]


def resolve_device(device, accelerator=None):
    """``torch.device`` for an estimator's ``device`` parameter.

    With an ``accelerate.Accelerator``, its device, whatever ``device`` says.

    ``"auto"`` is CUDA when available (in a Dask or Ray worker, the worker's
    GPU: see :func:`~sk_i2m2._parallel.worker_cuda_index`), else the CPU.
    Raises ``ValueError`` for a name torch does not know and for CUDA where
    there is none.
    """
    if accelerator is not None:
        return accelerator.device
    if str(device) == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device("cuda", worker_cuda_index())
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(
            f"device={device!r} is not a device torch knows ({exc}); use "
            "'auto', 'cpu', 'cuda' or 'cuda:<index>'."
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available.")
    return resolved


def data_device(tensors, device, memory_budget):
    """Where data for ``device`` lives: on the GPU when it fits the budget.

    Data on the device is sliced in place each step; otherwise batches are
    copied from host memory as they are needed. ``memory_budget`` is the
    largest fraction of the GPU's free memory the data may take. Data with
    a :class:`~sk_i2m2._lazy.LazyRows` modality (sparse, on disk) stays on
    the host and is read a batch at a time.
    """
    lazy = any(isinstance(t, LazyRows) for t in tensors.values())
    if device.type != "cuda" or memory_budget == 0 or lazy:
        return torch.device("cpu")
    n_bytes = sum(t.numel() * t.element_size() for t in tensors.values())
    free, _ = torch.cuda.mem_get_info(device)
    return device if n_bytes <= memory_budget * free else torch.device("cpu")


def place(tensor, device):
    """Copy ``tensor`` to ``device``; image-like data in channels-last layout on CUDA.

    A :class:`~sk_i2m2._lazy.LazyRows` stays where it is (on the host).
    """
    if isinstance(tensor, LazyRows):
        return tensor
    tensor = tensor.to(device)
    if device.type == "cuda" and tensor.dim() in (4, 5):
        layout = torch.channels_last if tensor.dim() == 4 else torch.channels_last_3d
        tensor = tensor.contiguous(memory_format=layout)
    return tensor


def to_channels_last(module):
    """Channels-last weights for conv encoders: faster cuDNN kernels on GPU, oneDNN on CPU.

    Inputs stay as they come: a convolution with channels-last weights
    gives channels-last outputs, so every later layer runs in that layout.
    """
    for sub in module.modules():
        if isinstance(sub, ConvNet):
            sub.to(memory_format=torch.channels_last if sub.ndim == 2 else torch.channels_last_3d)


@contextlib.contextmanager
def cudnn_autotune(enabled):
    """Let cuDNN pick the fastest convolution algorithms while the block runs.

    Batch shapes repeat every step, so the one-off search pays for itself.
    The user's setting is restored afterwards.
    """
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = enabled or previous
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous
