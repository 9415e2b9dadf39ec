"""Defaults chosen from the number of training samples.

Small clinical cohorts (tens to hundreds of patients) need another fitting
regime than large data sets: a 15 % validation split of 80 patients holds a
dozen of them, so early stopping on it is noise, and wide MLP experts
overfit. Below :data:`SMALL_COHORT` samples (:data:`MULTILABEL_SMALL_COHORT`
for multilabel outcomes) the estimator's ``"auto"`` settings switch to
inner cross-fitting, linear vector experts and full-batch L-BFGS; measured
in ``benchmarks/small_cohorts.py`` and ``benchmarks/multilabel_small.py``.
Fits that keep a mini-batch optimizer (conv or recurrent encoders,
augmentation, the regressor's Gaussian experts) on fewer than
:data:`FEW_TRAINING_ROWS` rows take larger batches at a proportionally
larger learning rate (:func:`auto_lr_schedule`); measured in
``benchmarks/small_conv_regimes.py``.
"""

from __future__ import annotations

import torch

__all__ = [
    "SMALL_COHORT",
    "MULTILABEL_SMALL_COHORT",
    "FULL_BATCH_PATIENCE",
    "auto_optimizer",
    "auto_patience",
    "auto_weight_decay",
    "full_batch_fits",
    "auto_batch_size",
    "auto_lr_schedule",
    "FEW_TRAINING_ROWS",
    "SMALL_COHORT_BATCH_SIZE",
    "SMALL_COHORT_REFERENCE_BATCH_SIZE",
    "is_full_batch",
    "auto_n_folds",
    "auto_n_folds_regression",
    "is_small_cohort",
]

#: Fewer training samples than this count as a small cohort.
SMALL_COHORT = 1000

#: The small-cohort size of multilabel outcomes
#: (``LabelsOutcome.small_cohort_size``). A multilabel product is calibrated
#: per label by the cross-fitted folds' held-out rows (one expert weight per
#: label), which a single validation split cannot fit without overfitting.
#: On ``benchmarks/multilabel_small.py``'s 1,400 training rows (10 seeds) the
#: small-cohort defaults learnt the synthetic set's interaction label
#: (subset accuracy 0.622 against 0.366 with the mini-batch defaults;
#: gradient boosting 0.613) and scored 0.871 against 0.862 on mfeat's four
#: findings (log loss 0.085 against 0.081), in 25 % and 45 % of the time.
#: Multiclass outcomes keep :data:`SMALL_COHORT`: there the 2,000 size cost
#: accuracy on mfeat mor+zer (``benchmarks/RESULTS.md``, "Small-cohort
#: size").
MULTILABEL_SMALL_COHORT = 2000

#: Epochs of patience of ``n_iter_no_change="auto"`` with L-BFGS, unless the
#: outcome sets its own (``Outcome.full_batch_patience``).
FULL_BATCH_PATIENCE = 3

#: Below this many training rows, ``n_train // 16`` is under 16 and the
#: mini-batch rule of :func:`auto_batch_size` used to take its floor of 16.
FEW_TRAINING_ROWS = 256

#: Mini-batch size of ``batch_size="auto"`` on fewer than
#: :data:`FEW_TRAINING_ROWS` training rows (all rows if fewer).
SMALL_COHORT_BATCH_SIZE = 64

#: The batch the default ``lr`` trains at unscaled on fewer than
#: :data:`FEW_TRAINING_ROWS` rows: the former ``batch_size="auto"`` there.
SMALL_COHORT_REFERENCE_BATCH_SIZE = 16


def is_small_cohort(n_samples, size=None):
    """Whether ``n_samples`` training samples get the small-cohort defaults.

    ``size`` is the outcome's small-cohort size (``Outcome.small_cohort_size``;
    ``None``: :data:`SMALL_COHORT`).
    """
    return n_samples < (SMALL_COHORT if size is None else size)


def auto_optimizer(small_cohort, full_batch_fits=True):
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
    full_batch = small_cohort and full_batch_fits
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


def auto_patience(optimizer, full_batch_patience=FULL_BATCH_PATIENCE):
    """``n_iter_no_change="auto"``: ``full_batch_patience`` epochs with L-BFGS, else 10.

    An L-BFGS epoch is up to 5 quasi-Newton iterations on all rows, far more
    progress than a mini-batch epoch, so fewer epochs past the best
    validation loss tell that it has stopped improving. The count is the
    outcome's (``Outcome.full_batch_patience``): :data:`FULL_BATCH_PATIENCE`
    unless it measured otherwise; ``benchmarks/small_cohorts.py`` compares
    counts (its ``regime:`` rows).
    """
    return full_batch_patience if is_full_batch(optimizer) else 10


def is_full_batch(optimizer):
    """Whether ``optimizer`` trains on all training rows at once (L-BFGS)."""
    return issubclass(optimizer, torch.optim.LBFGS)


def auto_batch_size(n_train, optimizer=torch.optim.AdamW):
    """Batch size of ``batch_size="auto"``.

    All ``n_train`` rows for a full-batch optimizer (L-BFGS). Otherwise
    ``n_train // 16`` clipped to [16, 256], about 16 steps per epoch,
    except on fewer than :data:`FEW_TRAINING_ROWS` rows: there
    :data:`SMALL_COHORT_BATCH_SIZE` rows (all rows if fewer), which
    :func:`auto_lr_schedule` pairs with a larger learning rate.
    """
    n_train = max(int(n_train), 1)
    if is_full_batch(optimizer):
        return n_train
    if n_train < FEW_TRAINING_ROWS:
        return min(SMALL_COHORT_BATCH_SIZE, n_train)
    return int(min(256, max(16, n_train // 16)))


def auto_lr_schedule(params, batch_size, n_train, optimizer):
    """The learning-rate schedule of a fit: ``params["lr_schedule"]``, ``"auto"`` resolved.

    ``"small_cohort"`` where ``batch_size="auto"`` chose the small-cohort
    mini-batch of :func:`auto_batch_size` (a mini-batch optimizer on fewer
    than :data:`FEW_TRAINING_ROWS` rows; ``batch_size`` is the resolved
    size, which an outcome may set otherwise): each stage then trains at
    ``k = batch_size / 16`` times its learning rate from the first step,
    the linear scaling rule from the batch of 16 the default ``lr`` is
    tuned for there
    (:func:`~sk_i2m2.training.schedule.lr_schedule_callbacks`). Otherwise
    ``lr_schedule`` as given (``"auto"`` then scales only batches above
    256).

    Four times fewer optimizer steps per epoch at four times the rate
    keep accuracy and log loss at about 2.5 times less fit time. Measured
    with ``python -m benchmarks.small_conv_regimes`` on the digits
    image+table sets (conv image expert, linear table expert, 5
    cross-fitted folds; means over seeds 0-4, on 2 CPU cores shared with
    other jobs), against batches of 16 at the constant ``lr=1e-3`` fitted
    in the same run: digits-150 (105 training rows) test accuracy 0.947
    against 0.938, log loss 0.187 against 0.203, 3.1 s against 7.9 s per
    fit; digits-300 (210 rows) 0.967 against 0.967, 0.101 against 0.103,
    7.6 s against 18.7 s. A warm-up, shorter budgets with a cosine decay,
    or batches of 32 or 128 cost log loss or accuracy there (the module's
    screening table).
    """
    lr_schedule = params["lr_schedule"]
    small_batches = (
        params["batch_size"] == "auto"
        and not is_full_batch(optimizer)
        and n_train < FEW_TRAINING_ROWS
        and batch_size == auto_batch_size(n_train, optimizer)
    )
    return "small_cohort" if lr_schedule == "auto" and small_batches else lr_schedule


def auto_n_folds(n_samples, smallest, cv, small_cohort_size=None):
    """Number of inner folds for the estimator's ``cv`` parameter, or ``None`` (holdout).

    ``smallest`` is the number of samples of the smallest stratum (class)
    the folds are stratified on; ``n_samples`` for unstratified folds.
    ``"auto"``: 5 folds for a small cohort (fewer when a class has fewer
    than 5 samples; none below 2), else ``None``; ``small_cohort_size`` as
    for :func:`is_small_cohort`.
    """
    if cv is None:
        return None
    if cv == "auto":
        if not is_small_cohort(n_samples, small_cohort_size) or smallest < 2:
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
