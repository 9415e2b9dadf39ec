"""torchvision backbones adapted to the images and volumes of a modality.

Nothing here imports torchvision: :class:`~sk_i2m2.encoders.TorchvisionEncoder`
builds the torchvision model and passes it to :class:`BackboneAdapter`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["BackboneAdapter", "remove_head", "set_trainable"]

# Attributes holding the classification head of torchvision's models.
_HEADS = ("fc", "classifier", "heads", "head")


def remove_head(model):
    """Replace the last ``nn.Linear`` of ``model``'s head by an identity; ``model`` outputs features."""
    for attr in _HEADS:
        head = getattr(model, attr, None)
        if isinstance(head, nn.Linear):
            setattr(model, attr, nn.Identity())
            return model
        if isinstance(head, nn.Sequential):
            linear = [i for i, layer in enumerate(head) if isinstance(layer, nn.Linear)]
            if linear:
                head[linear[-1]] = nn.Identity()
                return model
    raise ValueError(f"Cannot find the classification head of {type(model).__name__}.")


def _blocks(model):
    """The trunk's parameter-holding stages, in order (e.g. a ResNet's stem and layer1..4)."""
    trunk = getattr(model, "features", None)
    if trunk is None and hasattr(model, "encoder") and hasattr(model.encoder, "layers"):
        trunk = model.encoder.layers  # vision transformers
    trunk = trunk if isinstance(trunk, nn.Module) else model
    return [m for m in trunk.children() if any(True for _ in m.parameters())]


def set_trainable(model, trainable):
    """Freeze all (``"none"``), none (``"all"``) or all but the last ``k`` blocks of ``model``.

    ``"last"`` is ``k = 1``. Parameters registered after the first trainable
    block (final norms, what is left of the head) train with it.
    """
    names = [name for name, _ in model.named_parameters()]
    if trainable == "all":
        first = 0
    elif trainable in ("none", 0):
        first = len(names)
    else:
        k = 1 if trainable == "last" else int(trainable)
        blocks = _blocks(model)
        if k > len(blocks):
            raise ValueError(
                f"trainable={trainable!r} asks for the last {k} blocks, but "
                f"{type(model).__name__} has {len(blocks)}."
            )
        first_param = next(blocks[-k].parameters())
        first = next(i for i, (_, p) in enumerate(model.named_parameters()) if p is first_param)
    for i, (_, p) in enumerate(model.named_parameters()):
        p.requires_grad_(i >= first)
    return model


class BackboneAdapter(nn.Module):
    """Feeds a modality's batches to a pretrained backbone.

    Adds a channel axis to ``(batch, H, W)`` images (``(batch, D, H, W)``
    volumes), repeats one channel to three, resizes the spatial sides to
    ``size`` (the depth of a volume is kept), and normalises with the
    weights' ``mean`` and ``std`` (buffers, so that a saved model keeps
    them). BatchNorm layers whose parameters are all frozen stay in eval
    mode, so fine-tuning the last blocks does not shift the statistics of
    the frozen ones.

    Parameters
    ----------
    model : torch.nn.Module
        The backbone, head removed.
    ndim : {2, 3}
        Spatial dimensions of a sample (image or volume).
    size : tuple of int
        Height and width the backbone expects.
    mean, std : sequence of float
        Per-channel normalisation of the weights (for inputs in [0, 1]).
    add_channel_axis : bool
        Whether samples come without a channel axis.
    """

    def __init__(self, model, ndim, size, mean, std, add_channel_axis):
        super().__init__()
        self.model = model
        self.ndim = ndim
        self.size = tuple(int(s) for s in size)
        self.add_channel_axis = add_channel_axis
        view = (1, 3) + (1,) * ndim
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(view))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(view))

    def train(self, mode=True):
        super().train(mode)
        for m in self.model.modules():
            if isinstance(m, _BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                m.eval()
        return self

    def forward(self, x):
        if self.add_channel_axis:
            x = x.unsqueeze(1)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, *x.shape[2:])
        if tuple(x.shape[-2:]) != self.size:
            if self.ndim == 2:
                x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
            else:
                size = (x.shape[2], *self.size)
                x = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
        return self.model((x - self.mean) / self.std)
