"""``fit``'s ``sample_weight``: its check, and the rows it keeps.

A weight is a row's share of every loss (each is a weighted mean); the
rows travel with their weights through the batches (see
:data:`~sk_i2m2.nn.experts.SAMPLE_WEIGHT`).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import _check_sample_weight

from ._lazy import take

__all__ = ["check_sample_weight", "drop_zero_weights"]


def drop_zero_weights(tensors, present, y, sample_weight):
    """The rows of positive weight; ``sample_weight`` None when their weights are equal.

    A row of weight 0 would add nothing to any loss, but it would still
    shape the input statistics, the batches and the validation split;
    dropping it makes a zero weight mean exactly "not in the data". Equal
    weights are the unweighted fit (every loss is a weighted mean).
    """
    if sample_weight is None:
        return tensors, present, y, None
    keep = sample_weight > 0
    if not keep.all():
        rows = np.flatnonzero(keep)
        # take: tensors and lazily read modalities alike.
        tensors = {m: take(t, rows) for m, t in tensors.items()}
        if present is not None:
            present = take(present, rows)
            # As check_modalities reports complete data.
            present = None if bool(present.all()) else present
        y, sample_weight = y[keep], sample_weight[keep]
    if np.all(sample_weight == sample_weight[0]):
        sample_weight = None
    return tensors, present, y, sample_weight


def check_sample_weight(sample_weight, n_samples):
    """Validate ``fit``'s ``sample_weight``: a float64 array of ``n_samples`` weights, or None.

    Read by scikit-learn's ``_check_sample_weight`` (a scalar is one weight
    for every sample); weights must be finite, non-negative and not all 0.
    """
    if sample_weight is None:
        return None
    message = (
        f"sample_weight must hold one finite, non-negative number per sample ({n_samples} "
        "samples), not all 0:"
    )
    try:
        weights = _check_sample_weight(
            sample_weight, np.empty((n_samples, 0)), dtype=np.float64, ensure_non_negative=True
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{message} {exc}") from None
    # Older scikit-learn releases let all-zero weights through.
    if not weights.any():
        raise ValueError(f"{message} Sample weights must contain at least one non-zero number.")
    return weights
