"""Training regimes of mini-batch (conv) experts on small image cohorts.

Run from the repository root::

    python -m benchmarks.small_conv_regimes
    python -m benchmarks.small_conv_regimes --seeds 0 1 2 --candidates "former default" "b64 lr4e-3"

On the digits image+table sets of ``benchmarks/small_cohorts.py``
(``digits-150`` and ``digits-300``: the 8x8 image through a conv encoder
and a 16-feature table through a linear one, 10 classes; 105 and 210
training rows, 84 and 168 in each inner fold), every candidate regime is
fitted with ``I2M2Classifier(random_state=seed, **params)`` on the same
split of each seed, one after the other in this process, and scored on
the test rows. A conv encoder makes the whole fit mini-batch AdamW
(``optimizer="auto"``), cross-fitted over 5 folds (``cv="auto"``). The
table gives, per set and candidate, the means over seeds of test
accuracy, log loss, fit seconds, stage-1 / stage-2 epochs and seconds
(summed over the fold models), the fit time relative to the former
default fitted in the same run (``speedup``) and the accuracy difference
to it in points. It prints the table and writes no file.

Where the time went: with batches of 16 at ``lr=1e-3`` every fold ran
stage 1 to the 100-epoch cap (about 1,100 optimizer steps of ~2.4 ms,
which dominate the fit); the linear table expert was still improving
there. Screening, seeds 0-4 (means; seconds taken while other jobs shared
the 2 cores, so only the ratios in one run compare)::

    candidate                    digits-150            digits-300
                                 acc    loss  speed    acc    loss  speed
    former default (b16 1e-3)    0.938  0.203  1.0     0.967  0.103  1.0
    b64 lr4e-3 (the new default) 0.947  0.187  2.6     0.967  0.101  2.7
    b16 lr3e-3 40 epochs         0.942  0.212  1.8     0.969  0.120  1.8
    b16 lr2e-3 50 epochs         0.933  0.215  1.5     0.976  0.098  1.8
    b32 lr2e-3 60 epochs         0.924  0.209  2.4     0.967  0.118  2.1
    b32 lr3e-3 50 epochs         0.933  0.194  2.8     0.964  0.106  2.4
    b64 x4 with 5-epoch warm-up  0.929  0.222  2.3     0.969  0.104  2.8
    b128 x8 with 5-epoch warm-up 0.938  0.194  2.8     0.967  0.121  4.0

Warm-up + cosine decay over 30-60 epochs (``cosine ...``, screened on
seeds 0-2 only) was 2.5-5 times faster but lost 0.02-0.06 of log loss on
both sets, and so did constant rates over 40-60 epochs at batch 64
(seeds 0-2): the shorter budgets leave the inter expert undertrained (its
inner-fold validation loss 0.25 against 0.15 on digits-300, seed 2).
Only batches of 64 at 4 x ``lr`` for the usual budget and early
stopping kept accuracy and log loss, about 2.5 times faster:
``batch_size="auto"`` and ``lr_schedule="auto"`` now give it on fewer
than 256 training rows (``sk_i2m2._sizing.auto_lr_schedule``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from skorch.callbacks import LRScheduler

from benchmarks.common import classification_scores, machine_description, script_command
from benchmarks.small_cohorts import load_split

SETS = ("digits-150", "digits-300")
SEEDS = (0, 1, 2, 3, 4)


class WarmupCosineFactor:
    """Multiplier of the base rate at step ``t``: a linear warm-up from ``start``, then cosine."""

    def __init__(self, warmup_steps, total_steps, start=0.1):
        self.warmup_steps = int(warmup_steps)
        self.total_steps = max(int(total_steps), self.warmup_steps + 1)
        self.start = float(start)

    def __call__(self, step):
        if step < self.warmup_steps:
            return self.start + (1.0 - self.start) * step / self.warmup_steps
        done = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        return 0.5 * (1.0 + np.cos(np.pi * done))


class WarmupCosineLR(LRScheduler):
    """Per-batch warm-up then cosine decay over the stage's ``max_epochs`` (a prototype)."""

    def __init__(self, warmup_epochs=3, event_name="batch_lr"):
        super().__init__(
            policy=torch.optim.lr_scheduler.LambdaLR,
            monitor=None,
            event_name=event_name,
            step_every="batch",
        )
        self.warmup_epochs = warmup_epochs

    @property
    def kwargs(self):
        return {"lr_lambda": self.factor_}

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        steps = len(net.get_iterator(net.get_dataset(X, y), training=True))
        self.factor_ = WarmupCosineFactor(self.warmup_epochs * steps, net.max_epochs * steps)
        super().on_train_begin(net, X=X, y=y, **kwargs)

    def _get_scheduler(self, net, policy, **scheduler_kwargs):
        return policy(net.optimizer_, **scheduler_kwargs)


def _cosine(**params):
    """Parameters with a warm-up + cosine schedule in both stages (batches of 16 unless given)."""
    return lambda: {"batch_size": 16, **params, "callbacks": [("cosine", WarmupCosineLR())]}


def _warmed_up(**params):
    """The linear rule from a batch of 16, with :class:`~sk_i2m2.callbacks.LargeBatchLR`'s ramp."""
    from sk_i2m2.callbacks import LargeBatchLR

    return lambda: {**params, "callbacks": [LargeBatchLR(reference_batch_size=16)]}


def _plain(**params):
    return lambda: dict(params)


#: name -> () -> I2M2Classifier parameters (fresh callbacks for every fit).
#: An explicit ``batch_size`` or a scheduler in ``callbacks`` turns the
#: small-cohort schedule off, so each candidate trains exactly as named.
CANDIDATES = {
    # Batches of 16 at lr=1e-3, constant: batch_size="auto" before the
    # small-cohort rule.
    "former default": _plain(batch_size=16),
    # batch_size="auto", lr_schedule="auto": 64 rows at 4 x lr.
    "default": _plain(),
    # The alternatives screened against it.
    "b16 lr3e-3 40": _plain(batch_size=16, lr=3e-3, max_epochs=40),
    "b16 lr2e-3 50": _plain(batch_size=16, lr=2e-3, max_epochs=50),
    "b32 lr2e-3 60": _plain(batch_size=32, lr=2e-3, max_epochs=60),
    "b32 lr3e-3 50": _plain(batch_size=32, lr=3e-3, max_epochs=50),
    "b64 lr4e-3": _plain(batch_size=64, lr=4e-3),
    "b64 x4 warm-up": _warmed_up(batch_size=64),
    "b128 x8 warm-up": _warmed_up(batch_size=128),
    "cosine b16 lr1e-2 30": _cosine(lr=1e-2, max_epochs=30),
    "cosine b64 lr4e-3 30": _cosine(lr=4e-3, max_epochs=30, batch_size=64),
    "cosine b64 lr4e-3 60": _cosine(lr=4e-3, max_epochs=60, batch_size=64),
}
DEFAULT_CANDIDATES = ["former default", "default"]


def fit_candidate(name, X_train, y_train, X_test, y_test, seed):
    """One fit of candidate ``name``; its scores, time and epochs."""
    from sk_i2m2 import I2M2Classifier

    start = time.perf_counter()
    clf = I2M2Classifier(random_state=seed, **CANDIDATES[name]()).fit(X_train, y_train)
    seconds = time.perf_counter() - start
    nets = clf.fold_nets_ or [(clf.pretrain_net_, clf.finetune_net_)]
    scores = classification_scores(clf.predict_proba(X_test), clf.classes_, y_test)
    return {
        "accuracy": scores["accuracy"],
        "log_loss": scores["log_loss"],
        "fit_seconds": seconds,
        "stage1_epochs": sum(len(p.history) for p, _ in nets),
        "stage2_epochs": sum(len(f.history) for _, f in nets if f is not None),
        "stage1_seconds": sum(sum(p.history[:, "dur"]) for p, _ in nets),
        "stage2_seconds": sum(sum(f.history[:, "dur"]) for _, f in nets if f is not None),
    }


def run(sets, seeds, candidates):
    """One row per (set, seed, candidate); candidates alternate within each split."""
    rows = []
    for name in sets:
        for seed in seeds:
            X_train, X_test, y_train, y_test = load_split(name, seed)
            for candidate in candidates:
                row = fit_candidate(candidate, X_train, y_train, X_test, y_test, seed)
                row.update(dataset=name, seed=seed, candidate=candidate)
                print(
                    f"{name} seed {seed} {candidate}: acc {row['accuracy']:.3f} "
                    f"loss {row['log_loss']:.3f} {row['fit_seconds']:.1f}s "
                    f"epochs {row['stage1_epochs']}+{row['stage2_epochs']}",
                    flush=True,
                )
                rows.append(row)
    return pd.DataFrame(rows)


def table(results, reference="former default"):
    """Means over seeds per (set, candidate), with the speed-up over ``reference``."""
    means = results.groupby(["dataset", "candidate"], sort=False).mean(numeric_only=True)
    means = means.drop(columns="seed")
    if reference in results["candidate"].values:
        base = means.xs(reference, level="candidate")["fit_seconds"]
        means["speedup"] = (
            base.reindex(means.index.get_level_values(0)).values / means["fit_seconds"]
        )
        base_acc = means.xs(reference, level="candidate")["accuracy"]
        means["d_acc_pt"] = 100 * (
            means["accuracy"] - base_acc.reindex(means.index.get_level_values(0)).values
        )
    return means


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--candidates", nargs="+", default=DEFAULT_CANDIDATES)
    args = parser.parse_args(argv)
    unknown = [c for c in args.candidates if c not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}; choose from {list(CANDIDATES)}")
    print(script_command("small_conv_regimes", argv))
    print(machine_description())
    results = run(args.sets, args.seeds, args.candidates)
    with pd.option_context(
        "display.width", 250, "display.max_columns", 20, "display.float_format", "{:.3f}".format
    ):
        print(table(results))


if __name__ == "__main__":
    main()
