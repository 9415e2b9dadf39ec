"""The torch side of I2M2: experts, their product, and the two training losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INTER = "inter"
# Key of the ``(batch, n_modalities)`` boolean presence mask in a batch dict;
# absent from batches of complete data.
PRESENT = "__present__"


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

    def forward(self, x, present=None):
        x = self.scaler(x)
        if present is not None:
            # Missing rows enter as the (scaled) training mean, 0, so that
            # they disturb BatchNorm's batch statistics as little as possible;
            # their outputs are masked by the experts.
            x = x * present.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        return self.body(x)


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
    """``q_k(y | x_k)``: one modality's encoder and a linear classifier.

    On samples missing its modality the expert abstains: its logits are 0,
    the neutral element of the product of experts.
    """

    def __init__(self, modality, index, encoder, n_features, n_classes):
        super().__init__()
        self.modality = modality
        self.index = index
        self.encoder = encoder
        self.head = nn.Linear(n_features, n_classes)

    def available(self, present):
        return present[:, self.index]

    def forward(self, X, present=None):
        if present is None:
            return self.head(self.encoder(X[self.modality]))
        mask = self.available(present)
        logits = self.head(self.encoder(X[self.modality], mask))
        return logits.masked_fill(~mask.unsqueeze(1), 0.0)


def drop_modalities(present, p):
    """Hide each modality of each sample with probability ``p``.

    A sample keeps the modalities it had when every one would be hidden, so
    no sample is left without input.
    """
    kept = present & (torch.rand(present.shape, device=present.device) >= p)
    return torch.where(kept.any(1, keepdim=True), kept, present)


class InterExpert(nn.Module):
    """``q_inter(y | x_1..x_M)``: per-modality encoders, fusion, MLP classifier.

    A missing modality is handled as ``missing`` says: ``"null"`` puts a
    learned null embedding (one per modality, zero at initialisation) in
    place of its features; ``"drop"`` makes the expert abstain (logits 0) on
    any sample that misses a modality. With ``"null"``, ``modality_dropout``
    hides each modality of each training sample with that probability, so
    that the null embeddings are trained even on complete data.
    """

    def __init__(self, encoders, n_features, fusion, n_classes, hidden_size, dropout,
                 missing="null", modality_dropout=0.0):
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.fusion = fusion
        self.head = nn.Sequential(
            nn.Linear(fusion.out_features, hidden_size),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, n_classes),
        )
        self.missing = missing
        self.modality_dropout = modality_dropout
        self.null = (nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in n_features)
                     if missing == "null" else None)

    def available(self, present):
        if self.missing == "null":
            return torch.ones_like(present[:, 0])
        return present.all(1)

    def forward(self, X, present=None):
        if self.training and self.modality_dropout > 0:
            if present is None:
                batch = len(next(iter(X.values())))
                present = torch.ones(batch, len(self.encoders), dtype=torch.bool,
                                     device=self.head[0].weight.device)
            present = drop_modalities(present, self.modality_dropout)
        if present is None:
            features = [encoder(X[name]) for name, encoder in self.encoders.items()]
            return self.head(self.fusion(features))
        features = [encoder(X[name], present[:, i])
                    for i, (name, encoder) in enumerate(self.encoders.items())]
        if self.null is not None:
            features = [torch.where(present[:, i:i + 1], f, null.to(f.dtype))
                        for i, (f, null) in enumerate(zip(features, self.null))]
        logits = self.head(self.fusion(features))
        if self.null is None:
            logits = logits.masked_fill(~present.all(1, keepdim=True), 0.0)
        return logits


class I2M2Module(nn.Module):
    """All experts of one model; ``forward`` returns their stacked logits.

    The output has shape ``(n_experts, batch, n_classes)`` in the order of
    ``expert_names``. A batch may carry a presence mask under the key
    :data:`PRESENT` (``(batch, n_modalities)``, modalities in the experts'
    order); an expert that cannot see a sample gives it logits 0, so the
    product uses the experts that can. The model's prediction is the
    product of experts,
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

    def availability(self, X):
        """``(n_experts, batch)`` mask of the experts that see each sample, or None.

        ``None`` means every expert sees every sample (no presence mask).
        """
        present = X.get(PRESENT)
        if present is None:
            return None
        return torch.stack([expert.available(present) for expert in self.experts.values()])

    def forward(self, **X):
        present = X.pop(PRESENT, None)
        return torch.stack([expert(X, present) for expert in self.experts.values()])


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
    step only saves launches and Python overhead. Each expert's loss is the
    (class-weighted) mean over the samples it sees (``available``).
    """

    def __init__(self, weight=None):
        super().__init__()
        self.register_buffer("weight", weight)

    def per_expert_sums(self, expert_logits, y, available=None):
        """Per expert: the sum of weighted sample losses and the sum of weights."""
        n_experts, batch, n_classes = expert_logits.shape
        losses = F.cross_entropy(
            expert_logits.reshape(-1, n_classes), y.repeat(n_experts), reduction="none",
        ).view(n_experts, batch)
        if self.weight is None and available is None:  # the common case: plain means
            return losses.sum(1), losses.new_full((n_experts,), batch)
        if self.weight is None:
            weights = available.to(losses.dtype)
        else:
            weights = self.weight[y].expand(n_experts, batch)
            if available is not None:
                weights = weights * available
        return (losses * weights).sum(1), weights.sum(1)

    def per_expert(self, expert_logits, y, available=None):
        """Each expert's mean loss; 0 for an expert that sees no sample."""
        total, weight = self.per_expert_sums(expert_logits, y, available)
        return total / weight.clamp_min(torch.finfo(weight.dtype).tiny)

    def forward(self, expert_logits, y, available=None):
        return self.per_expert(expert_logits, y, available).sum()


class ProductOfExpertsNLLLoss(nn.Module):
    """Stage 2: cross-entropy of the product of experts (the I2M2 objective).

    ``available`` is accepted for symmetry with :class:`ExpertsNLLLoss` and
    not needed: an expert that cannot see a sample already gives it logits
    0, and every sample has at least one expert.
    """

    def __init__(self, weight=None):
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, expert_logits, y, available=None):
        return F.cross_entropy(expert_logits.sum(0), y, weight=self.weight)
