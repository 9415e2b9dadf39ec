"""The experts of I2M2 and the module that holds them all."""

from __future__ import annotations

import torch
from torch import nn

from .frozen import features_key

__all__ = [
    "INTER",
    "PRESENT",
    "SAMPLE_WEIGHT",
    "Encoder",
    "IntraExpert",
    "InterExpert",
    "I2M2Module",
    "drop_modalities",
    "feature_size",
]

INTER = "inter"
# Key of the ``(batch, n_modalities)`` boolean presence mask in a batch dict;
# absent from batches of complete data.
PRESENT = "__present__"
# Key of the ``(batch,)`` float tensor of sample weights in a batch dict: the
# weights travel with their rows through every split and batch, like the
# presence mask. The module ignores them; ``StageNet.get_loss`` and the
# stage-1 checkpoint hand them to the criterion as ``sample_weight``.
# Absent from batches of unweighted data.
SAMPLE_WEIGHT = "__sample_weight__"


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
            f"An encoder must return features of shape (batch, n_features); got {tuple(out.shape)}."
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

    @property
    def output_layer(self):
        """The linear layer that gives the logits."""
        return self.head

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

    def __init__(
        self,
        encoders,
        n_features,
        fusion,
        n_classes,
        hidden_size,
        dropout,
        missing="null",
        modality_dropout=0.0,
    ):
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
        self.null = (
            nn.ParameterList(nn.Parameter(torch.zeros(n)) for n in n_features)
            if missing == "null"
            else None
        )

    @property
    def output_layer(self):
        """The linear layer that gives the logits."""
        return self.head[-1]

    def available(self, present):
        if self.missing == "null":
            return torch.ones_like(present[:, 0])
        return present.all(1)

    def forward(self, X, present=None):
        if self.training and self.modality_dropout > 0:
            if present is None:
                batch = len(next(iter(X.values())))
                present = torch.ones(
                    batch, len(self.encoders), dtype=torch.bool, device=self.head[0].weight.device
                )
            present = drop_modalities(present, self.modality_dropout)
        if present is None:
            features = [encoder(X[name]) for name, encoder in self.encoders.items()]
            return self.head(self.fusion(features))
        features = [
            encoder(X[name], present[:, i])
            for i, (name, encoder) in enumerate(self.encoders.items())
        ]
        if self.null is not None:
            features = [
                torch.where(present[:, i : i + 1], f, null.to(f.dtype))
                for i, (f, null) in enumerate(zip(features, self.null))
            ]
        logits = self.head(self.fusion(features))
        if self.null is None:
            logits = logits.masked_fill(~present.all(1, keepdim=True), 0.0)
        return logits


class I2M2Module(nn.Module):
    """All experts of one model; ``forward`` returns their stacked logits.

    The output has shape ``(n_experts, batch, n_classes)`` in the order of
    ``expert_names``. ``frozen`` holds one encoder per modality whose
    encoder does not train (see :mod:`sk_i2m2.nn.frozen`): it runs once in
    front of the experts, which read its features. A batch may carry a presence mask under the key
    :data:`PRESENT` (``(batch, n_modalities)``, modalities in the experts'
    order); an expert that cannot see a sample gives it logits 0, so the
    product uses the experts that can. The model's prediction is the
    product of experts, :func:`~sk_i2m2.nn.product.combine`; stage-1
    training scores every expert on its own
    (:class:`~sk_i2m2.nn.losses.ExpertsNLLLoss`), stage-2 scores the product
    (:class:`~sk_i2m2.nn.losses.ProductOfExpertsNLLLoss`).

    ``stopped`` names experts whose stage-1 training has ended (see
    :class:`~sk_i2m2.training.callbacks.ExpertCheckpoint`): they are not
    run, abstain on every sample (logits 0, unavailable), and so cost
    nothing while the others train on. It is empty outside stage 1.
    """

    def __init__(self, experts, frozen=None):
        super().__init__()
        self.experts = nn.ModuleDict(experts)
        self.frozen = nn.ModuleDict(frozen or {})
        self.stopped = frozenset()

    @property
    def expert_names(self):
        return list(self.experts)

    def availability(self, X):
        """``(n_experts, batch)`` mask of the experts that see each sample, or None.

        ``None`` means every expert sees every sample (no presence mask and
        no stopped expert); an expert in ``stopped`` sees none.
        """
        present = X.get(PRESENT)
        if present is None and not self.stopped:
            return None
        if present is None:
            rows = next(value for key, value in X.items() if key != SAMPLE_WEIGHT)
            available = torch.ones(
                len(self.experts), len(rows), dtype=torch.bool, device=rows.device
            )
        else:
            available = torch.stack([expert.available(present) for expert in self.experts.values()])
        # Filled in place rather than masked with a tensor built from a list,
        # whose copy to a GPU would wait for the device on every step.
        for i, name in enumerate(self.experts):
            if name in self.stopped:
                available[i] = False
        return available

    def penalised_parameters(self):
        """Expert name -> the parameters of that expert the L2 penalty covers.

        Trainable parameters of two or more dimensions: weight matrices and
        kernels (biases, normalisation scales and null tokens are not
        penalised, as in scikit-learn's linear models).
        """
        return {
            name: [p for p in expert.parameters() if p.requires_grad and p.ndim >= 2]
            for name, expert in self.experts.items()
        }

    def squared_weight_norm(self, penalised=None):
        """Sum of the squared weight matrices and kernels of the experts that train.

        The L2 penalty of full-batch training, over
        :meth:`penalised_parameters` of the experts not in ``stopped``.

        Parameters
        ----------
        penalised : dict or None, default=None
            The result of :meth:`penalised_parameters`, collected once by a
            caller that evaluates the penalty many times (walking the
            experts' parameters costs as much as the penalty itself on
            small experts); ``None`` collects it now.
        """
        if penalised is None:
            penalised = self.penalised_parameters()
        weights = [
            parameter
            for name, parameters in penalised.items()
            if name not in self.stopped
            for parameter in parameters
        ]
        if not weights:
            return 0.0
        # One multi-tensor square instead of one operator per parameter (in
        # the backward pass too); the sums stay per parameter and in order,
        # so the penalty is the same to the last bit.
        return sum((square.sum() for square in torch._foreach_mul(weights, weights)), 0.0)

    @torch.no_grad()
    def scale_outputs(self, weights):
        """Multiply each expert's logits by its weight, in place.

        ``weights`` maps expert names to a factor, or to one factor per
        output (an array of the output layer's ``out_features``: e.g. one
        per label); scaling an expert's output layer is exactly scaling its
        logits, so the module stays a product of (tempered) experts and
        predicts, saves and exports as before.
        """
        for name, factor in weights.items():
            layer = self.experts[name].output_layer
            factor = torch.as_tensor(factor, dtype=layer.weight.dtype, device=layer.weight.device)
            layer.weight.mul_(factor.view(-1, 1) if factor.ndim else factor)
            if layer.bias is not None:
                layer.bias.mul_(factor)

    def encode_frozen(self, X):
        """``X`` with each frozen modality's input replaced by its features.

        The features go under :func:`~sk_i2m2.nn.frozen.features_key`; a
        batch that already carries them (training on features computed once)
        is left as it is.
        """
        X = dict(X)
        for name, encoder in self.frozen.items():
            if name in X:
                X[features_key(name)] = encoder(X.pop(name))
        return X

    def expert_inputs(self, X):
        """What the experts read from a batch ``X``: ``(inputs, present)``.

        ``inputs`` maps each modality to its rows (a frozen modality to its
        features); ``present`` is the presence mask or ``None``.
        """
        X = dict(X)
        present = X.pop(PRESENT, None)
        X.pop(SAMPLE_WEIGHT, None)
        X = self.encode_frozen(X)
        for name in self.frozen:
            X[name] = X.pop(features_key(name))
        return X, present

    def forward(self, **X):
        X, present = self.expert_inputs(X)
        outputs = {
            name: expert(X, present)
            for name, expert in self.experts.items()
            if name not in self.stopped
        }
        if len(outputs) < len(self.experts):
            abstain = torch.zeros_like(next(iter(outputs.values())))
            outputs = {name: outputs.get(name, abstain) for name in self.experts}
        return torch.stack(list(outputs.values()))
