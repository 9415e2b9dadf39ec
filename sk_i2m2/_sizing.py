"""Defaults chosen from the number of training samples.

Small clinical cohorts (tens to hundreds of patients) need another fitting
regime than large data sets: a 15 % validation split of 80 patients holds a
dozen of them, so early stopping on it is noise, and wide MLP experts
overfit. Below :data:`SMALL_COHORT` samples the estimator's ``"auto"``
settings switch to inner cross-fitting, linear vector experts and
full-batch L-BFGS; measured in ``benchmarks/small_cohorts.py``.
"""

from __future__ import annotations

import torch

__all__ = [
    "SMALL_COHORT",
    "auto_optimizer",
    "auto_patience",
    "auto_weight_decay",
    "full_batch_fits",
    "auto_batch_size",
    "is_full_batch",
    "auto_n_folds",
    "auto_n_folds_regression",
    "is_small_cohort",
]

#: Fewer training samples than this count as a small cohort.
SMALL_COHORT = 1000


def is_small_cohort(n_samples):
    """Whether ``n_samples`` training samples get the small-cohort defaults."""
    return n_samples < SMALL_COHORT


def auto_optimizer(n_samples, full_batch_fits=True):
    """The optimizer of ``optimizer="auto"``: L-BFGS on a small cohort, else AdamW.

    On a few hundred rows a mini-batch optimizer spends thousands of steps
    of microseconds each, dominated by per-step overhead, to approach what
    a quasi-Newton method reaches in tens of full-batch iterations (as
    scikit-learn advises ``solver="lbfgs"`` for ``MLPClassifier`` on small
    data); a linear expert's stage 1 is then solved as the convex problem it
    is. ``full_batch_fits`` is ``False`` where the fit needs mini-batches or
    a loss that changes from one evaluation to the next (see
    :func:`full_batch_fits`): AdamW then.
    """
    full_batch = is_small_cohort(n_samples) and full_batch_fits
    return torch.optim.LBFGS if full_batch else torch.optim.AdamW


def full_batch_fits(specs, *, batch_size, data_parallel, on_disk, stochastic):
    """Whether a fit can train full-batch with L-BFGS.

    Only vector experts: tables and embeddings (MLP or linear encoders, or
    frozen encoders, whose experts read fixed features); conv and recurrent
    encoders keep mini-batch AdamW, the optimizer they are tuned for. Not
    with an explicit ``batch_size``, data-parallel training (each process
    trains on its shard of the batches, and the accelerator's optimizer
    takes no closure), modalities read from disk a batch at a time
    (``on_disk``), or a ``stochastic`` loss (augmentation, modality
    dropout), which a line search cannot follow.
    """
    from .encoders import MLPEncoder

    vectors = all(isinstance(spec, MLPEncoder) or spec.frozen for spec in specs.values())
    return vectors and batch_size == "auto" and not (data_parallel or on_disk or stochastic)


def auto_weight_decay(n_train, optimizer):
    """``weight_decay="auto"``: the L2 penalty of ``LogisticRegression()`` with L-BFGS, else 1e-4.

    With L-BFGS the penalty is in the loss (a mean over the training rows):
    ``1 / n_train`` makes a linear expert scikit-learn's default
    ``LogisticRegression(C=1)``. With a mini-batch optimizer it is the
    optimizer's decoupled weight decay, 1e-4. ``benchmarks/small_cohorts.py``
    compares it with 1e-4 under L-BFGS (its ``regime:`` rows).
    """
    return 1.0 / max(int(n_train), 1) if is_full_batch(optimizer) else 1e-4


def auto_patience(optimizer):
    """``n_iter_no_change="auto"``: 3 epochs with L-BFGS, 10 with a mini-batch optimizer.

    An L-BFGS epoch is up to 5 quasi-Newton iterations on all rows, far more
    progress than a mini-batch epoch, so fewer epochs past the best
    validation loss tell that it has stopped improving;
    ``benchmarks/small_cohorts.py`` compares 3 with 10 (its ``regime:`` rows).
    """
    return 3 if is_full_batch(optimizer) else 10


def is_full_batch(optimizer):
    """Whether ``optimizer`` trains on all training rows at once (L-BFGS)."""
    return issubclass(optimizer, torch.optim.LBFGS)


def auto_batch_size(n_train, optimizer=torch.optim.AdamW):
    """Batch size of ``batch_size="auto"``.

    All ``n_train`` rows for a full-batch optimizer (L-BFGS); otherwise
    ``n_train // 16`` clipped to [16, 256]: about 16 steps per epoch on
    small data.
    """
    if is_full_batch(optimizer):
        return max(int(n_train), 1)
    return int(min(256, max(16, n_train // 16)))


def auto_n_folds(n_samples, smallest, cv):
    """Number of inner folds for the estimator's ``cv`` parameter, or ``None`` (holdout).

    ``smallest`` is the number of samples of the smallest stratum (class)
    the folds are stratified on; ``n_samples`` for unstratified folds.
    ``"auto"``: 5 folds for a small cohort (fewer when a class has fewer
    than 5 samples; none below 2), else ``None``.
    """
    if cv is None:
        return None
    if cv == "auto":
        if not is_small_cohort(n_samples) or smallest < 2:
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
