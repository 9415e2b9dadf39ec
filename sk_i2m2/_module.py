"""The torch side of I2M2: experts, their product, and the two training losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INTER = "inter"


class Standardize(nn.Module):
    """Fixed affine input scaling ``(x - mean) / scale`` held as buffers.

    Buffers travel with the module (device moves, ``state_dict``), so
    prediction applies exactly the training statistics. ``mean`` and
    ``scale`` broadcast against one sample (e.g. ``(C, 1, 1)`` per channel
    of an image, ``(F,)`` per feature of a vector or sequence).
    """

    def __init__(self, mean, scale):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x):
        return (x - self.mean) / self.scale


class Encoder(nn.Module):
    """Optional input scaling followed by an encoder body."""

    def __init__(self, body, scaler=None):
        super().__init__()
        self.scaler = scaler if scaler is not None else nn.Identity()
        self.body = body

    def forward(self, x):
        return self.body(self.scaler(x))


def feature_size(encoder, example):
    """Number of features ``encoder`` produces for ``example`` (a 2-sample batch)."""
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        out = encoder(example)
    encoder.train(was_training)
    if out.dim() != 2:
        raise ValueError(
            f"An encoder must return features of shape (batch, n_features); got "
            f"{tuple(out.shape)}."
        )
    return int(out.shape[1])


class IntraExpert(nn.Module):
    """``q_k(y | x_k)``: one modality's encoder and a linear classifier."""

    def __init__(self, modality, encoder, n_features, n_classes):
        super().__init__()
        self.modality = modality
        self.encoder = encoder
        self.head = nn.Linear(n_features, n_classes)

    def forward(self, X):
        return self.head(self.encoder(X[self.modality]))


class InterExpert(nn.Module):
    """``q_inter(y | x_1..x_M)``: per-modality encoders, fusion, MLP classifier."""

    def __init__(self, encoders, n_features, fusion, n_classes, hidden_size, dropout):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.head = nn.Sequential(
            nn.Linear(fusion.out_features, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, n_classes),
        )

    def forward(self, X):
        features = [encoder(X[name]) for name, encoder in self.encoders.items()]
        return self.head(self.fusion(features))


class I2M2Module(nn.Module):
    """All experts of one model; ``forward`` returns their stacked logits.

    The output has shape ``(n_experts, batch, n_classes)`` in the order of
    ``expert_names``. The model's prediction is the product of experts,
    :func:`combine`; stage-1 training scores every expert on its own
    (:class:`ExpertsNLLLoss`), stage-2 scores the product
    (:class:`ProductOfExpertsNLLLoss`).
    """

    def __init__(self, experts):
        super().__init__()
        self.experts = nn.ModuleDict(experts)

    @property
    def expert_names(self):
        return list(self.experts)

    def forward(self, **X):
        return torch.stack([expert(X) for expert in self.experts.values()])


def combine(expert_logits):
    """Normalised product of experts: ``log_softmax`` of the summed logits.

    Each expert's normaliser is a constant in ``y`` and cancels, so the sum
    of raw logits followed by one ``log_softmax`` is exactly
    ``log(prod_k q_k(y|x) / Z)``.
    """
    return F.log_softmax(expert_logits.sum(0), dim=-1)


class ExpertsNLLLoss(nn.Module):
    """Stage 1: the sum over experts of each expert's own cross-entropy.

    Experts share no parameters, so each receives exactly the gradient it
    would get if trained alone on the same batches; training them in one
    step only saves launches and Python overhead.
    """

    def __init__(self, weight=None):
        super().__init__()
        self.register_buffer("weight", weight)

    def per_expert(self, expert_logits, y):
        n_experts, batch, n_classes = expert_logits.shape
        losses = F.cross_entropy(
            expert_logits.reshape(-1, n_classes), y.repeat(n_experts),
            weight=self.weight, reduction="none",
        ).view(n_experts, batch)
        if self.weight is None:
            return losses.mean(1)
        return losses.sum(1) / self.weight[y].sum()

    def forward(self, expert_logits, y):
        return self.per_expert(expert_logits, y).sum()


class ProductOfExpertsNLLLoss(nn.Module):
    """Stage 2: cross-entropy of the product of experts (the I2M2 objective)."""

    def __init__(self, weight=None):
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, expert_logits, y):
        return F.cross_entropy(expert_logits.sum(0), y, weight=self.weight)
