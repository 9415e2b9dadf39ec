"""Encoders that do not train: their features are computed once, not every batch.

An encoder whose parameters never change (a frozen pretrained backbone, a
``ModuleEncoder(..., trainable=False)``) gives the same features for a sample
in every epoch and in every expert. The model therefore holds one copy of
it per modality in front of the experts (``I2M2Module.frozen``): training
computes its features over all rows once per ``fit``
(:func:`frozen_features`) and the experts, which read them through an
identity encoder, train on those; prediction runs it once per batch, its
features shared by the intra and the inter expert.
"""

from __future__ import annotations

import torch

from .._lazy import materialize
from .encoder_modules import Flatten

__all__ = ["FrozenModule", "features_key", "frozen_features"]

# A batch holds precomputed features of a frozen modality under this prefix
# (modality names cannot start with "__").
_FEATURES = "__features__"


def features_key(modality):
    """Batch key of the precomputed features of ``modality``."""
    return f"{_FEATURES}{modality}"


class FrozenModule(Flatten):
    """A module used as a fixed feature extractor: no gradients, always in eval mode.

    Eval mode keeps BatchNorm on its running statistics and turns dropout
    off, so a sample's features do not depend on its batch or epoch (which
    is what makes computing them once exact). Outputs are flattened to
    ``(batch, features)``, as by :class:`~sk_i2m2.nn.encoder_modules.Flatten`
    (whose parameter names it keeps, so saved models load either way).
    """

    def __init__(self, net):
        super().__init__(net)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.net.eval()

    def train(self, mode=True):
        # The wrapped module stays in the eval mode set above: it is not
        # visited at all, which also keeps the ``train()`` call skorch makes
        # on every step from walking a large backbone's modules twice.
        self.training = mode
        return self


def frozen_features(encoder, x, device, batch_size=256):
    """Features of every row of ``x``, computed in batches on ``device``.

    ``x`` is a CPU tensor or the rows of an on-disk modality (``LazyRows``).

    Returns a CPU float32 tensor ``(n_samples, n_features)``.
    """
    was_training = encoder.training
    encoder.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            # materialize: the rows of an on-disk modality are read a batch at a time.
            batch = materialize(x[start : start + batch_size]).to(device, non_blocking=True)
            out.append(encoder(batch).flatten(1).float())
    encoder.train(was_training)
    return torch.cat(out).cpu()
