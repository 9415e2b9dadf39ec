"""The rules for samples that miss modalities, checked before training or prediction."""

from __future__ import annotations

import torch

from ._warnings import warn_user
from .nn.experts import INTER

__all__ = ["check_fit_options", "check_samples_have_an_expert", "warn_untrained_null"]


def check_fit_options(inter_missing, modality_dropout):
    """``modality_dropout`` trains null embeddings, which ``inter_missing="drop"`` lacks."""
    if modality_dropout > 0 and inter_missing == "drop":
        raise ValueError(
            f"modality_dropout={modality_dropout} trains the inter expert's "
            "null embeddings, which inter_missing='drop' does not have; use "
            "inter_missing='null' or modality_dropout=0."
        )


def check_samples_have_an_expert(present, modalities, dependencies, inter_missing):
    """Refuse samples that no expert can see (the inter expert alone, with ``"drop"``)."""
    if (
        present is None
        or dependencies != "inter"
        or inter_missing != "drop"
        or present.shape[1] == 1
    ):
        return
    unseen = torch.nonzero(~present.all(1)).flatten()
    if len(unseen):
        first = int(unseen[0])
        modality = modalities[int((~present[first]).nonzero()[0])]
        raise ValueError(
            f"{len(unseen)} sample(s) miss a modality (first sample {first}, missing "
            f"modality {modality!r}), but with dependencies='inter' and "
            "inter_missing='drop' no expert can see them; use inter_missing='null' "
            "or dependencies='both'."
        )


def warn_untrained_null(estimator, present):
    """Warn when a prediction needs a null embedding that never learned."""
    if (
        INTER not in estimator.expert_names_
        or estimator.inter_missing != "null"
        or estimator.modality_dropout > 0
    ):
        return
    untrained = [
        m
        for i, m in enumerate(estimator.modalities_)
        if estimator.missing_rate_[m] == 0 and not bool(present[:, i].all())
    ]
    if untrained:
        warn_user(
            f"Some samples miss modality {untrained[0]!r}, but the inter expert "
            "never learned a null embedding for it: no training sample missed it "
            "and modality_dropout=0. Its predictions on those samples are "
            "unreliable; refit with modality_dropout > 0 (e.g. 0.3) or "
            "inter_missing='drop'."
        )
