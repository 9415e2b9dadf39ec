"""Defaults chosen from the number of training samples.

Small clinical cohorts (tens to hundreds of patients) need another fitting
regime than large data sets: a 15 % validation split of 80 patients holds a
dozen of them, so early stopping on it is noise, and wide MLP experts
overfit. Below :data:`SMALL_COHORT` samples the estimator's ``"auto"``
settings switch to inner cross-fitting and linear vector experts; measured
in ``benchmarks/small_cohorts.py``.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "SMALL_COHORT",
    "auto_batch_size",
    "auto_n_folds",
    "auto_n_folds_regression",
    "is_small_cohort",
]

#: Fewer training samples than this count as a small cohort.
SMALL_COHORT = 1000


def is_small_cohort(n_samples):
    """Whether ``n_samples`` training samples get the small-cohort defaults."""
    return n_samples < SMALL_COHORT


def auto_batch_size(n_train):
    """``n_train // 16`` clipped to [16, 256]: about 16 steps per epoch on small data."""
    return int(min(256, max(16, n_train // 16)))


def auto_n_folds(y, cv):
    """Number of inner folds for the estimator's ``cv`` parameter, or ``None`` (holdout).

    ``"auto"``: 5 folds for a small cohort (fewer when a class has fewer
    than 5 samples; none below 2), else ``None``.
    """
    if cv is None:
        return None
    smallest = int(np.bincount(y).min())
    if cv == "auto":
        if not is_small_cohort(len(y)) or smallest < 2:
            return None
        return min(5, smallest)
    if smallest < cv:
        raise ValueError(
            f"cv={cv} folds need at least {cv} samples of each class; the smallest class "
            f"has {smallest}. Use fewer folds or cv=None (one validation split)."
        )
    return int(cv)


def auto_n_folds_regression(n_samples, cv):
    """:func:`auto_n_folds` for a continuous target (folds need no classes).

    ``"auto"``: 5 folds for a small cohort of at least 10 samples (2 rows
    per held-out fold), else ``None``.
    """
    if cv is None:
        return None
    if cv == "auto":
        return 5 if is_small_cohort(n_samples) and n_samples >= 10 else None
    if n_samples < 2 * cv:
        raise ValueError(
            f"cv={cv} folds need at least {2 * cv} samples (2 per held-out fold); got "
            f"{n_samples}. Use fewer folds or cv=None (one validation split)."
        )
    return int(cv)
