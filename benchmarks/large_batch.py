"""Accuracy and fit time of large batches with and without the learning-rate schedule.

At a fixed number of epochs a large batch takes few optimizer steps and ends
undertrained. ``lr_schedule="auto"`` scales the learning rate of batches
above 256 with the batch size, after a linear warm-up
(:class:`sk_i2m2.callbacks.LargeBatchLR`); ``"constant"`` is the plain
recipe. This script fits ``I2M2Classifier`` (defaults otherwise: two stages,
early stopping, default conv experts) on the k-space digits
(:func:`sk_i2m2.datasets.load_kspace_digits`, two (n, 1, 16, 15) image
modalities, 2000 samples, 10 classes) with each batch size and each
``lr_schedule`` (and, above 256, the square-root rule as variants), on
stratified 70/30 splits, one per seed, and reports test accuracy and log
loss, optimizer steps, epochs and fit wall time.

For batches of at most 256 the two recipes must give the same model; the
table says whether their predicted probabilities are identical.

It writes its section of ``RESULTS.md`` next to this file (between the
``large-batch`` markers), whatever the working directory, or to ``--output``.
``--device cuda`` fits on a GPU; ``--n-samples`` (a stratified subsample)
and ``--max-epochs`` shrink the run for a dry run.

Usage, from the repository root::

    python -m benchmarks.large_batch                     # 32, 256, 1024 x 3 seeds, about 40 min
    python -m benchmarks.large_batch --batch-sizes 32 1024 --seeds 0 --no-variants --no-write
    python -m benchmarks.large_batch --device cuda --seeds 0 --no-variants --output gpu.md
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
from sklearn.metrics import accuracy_score, log_loss
from sklearn.model_selection import train_test_split

from benchmarks.common import (
    RESULTS,
    machine_description,
    script_command,
    section_start,
    write_results,
)
from sk_i2m2 import I2M2Classifier
from sk_i2m2.callbacks import LargeBatchLR
from sk_i2m2.datasets import load_kspace_digits
from sk_i2m2.training.schedule import REFERENCE_BATCH_SIZE


def recipes(batch_size, n_train, variants=True):
    """Recipe name -> ``I2M2Classifier`` parameters, for ``batch_size`` on ``n_train`` rows.

    ``constant`` and ``auto`` are the two values of ``lr_schedule``. Above the
    reference batch, the variants measure the square-root rule of Adam
    instead of the linear one, through the public callback: at equal epochs,
    and with epoch budget and patience multiplied by ``sqrt(k)`` as well
    (so that ``lr x steps`` matches the reference batch's).
    """
    found = {"constant": {"lr_schedule": "constant"}, "auto": {"lr_schedule": "auto"}}
    k = min(batch_size, n_train) / REFERENCE_BATCH_SIZE
    if variants and k > 1:
        sqrt = {"lr_schedule": "constant", "callbacks": [LargeBatchLR(scaling="sqrt")]}
        found["sqrt"] = sqrt
        found["sqrt, √k × epochs"] = {
            **sqrt,
            "max_epochs": math.ceil(100 * math.sqrt(k)),
            "n_iter_no_change": math.ceil(10 * math.sqrt(k)),
        }
    return found


def optimizer_steps(net):
    """Training batches (optimizer steps) in a stage net's history."""
    if net is None:
        return 0
    return sum(1 for row in net.history for batch in row["batches"] if "train_loss" in batch)


def split(y, seed):
    return train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=seed)


def fit_one(X, y, batch_size, recipe, params, seed, device="cpu"):
    """Fit on the seed's 70 % split; test metrics, steps, epochs, time and probabilities."""
    train, test = split(y, seed)
    X_train = {m: v[train] for m, v in X.items()}
    X_test = {m: v[test] for m, v in X.items()}
    clf = I2M2Classifier(batch_size=batch_size, random_state=seed, device=device, **params)
    start = time.perf_counter()
    clf.fit(X_train, y[train])
    seconds = time.perf_counter() - start
    proba = clf.predict_proba(X_test)
    nets = (clf.pretrain_net_, clf.finetune_net_)
    return {
        "batch_size": batch_size,
        "recipe": recipe,
        "seed": seed,
        "accuracy": accuracy_score(y[test], clf.classes_[proba.argmax(1)]),
        "log_loss": log_loss(y[test], proba, labels=clf.classes_),
        "steps": [optimizer_steps(net) for net in nets],
        "epochs": [len(net.history) if net is not None else 0 for net in nets],
        "seconds": seconds,
        "proba": proba,
    }


def _mean_std(values, digits=3):
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}"


def summary_rows(runs, batch_sizes, seeds):
    """One markdown table row per batch size and recipe."""
    by_key = {(r["batch_size"], r["recipe"], r["seed"]): r for r in runs}
    reference = np.mean([by_key[(batch_sizes[0], "constant", s)]["accuracy"] for s in seeds])
    rows = []
    for batch_size in batch_sizes:
        names = dict.fromkeys(r["recipe"] for r in runs if r["batch_size"] == batch_size)
        for recipe in names:
            group = [by_key[(batch_size, recipe, s)] for s in seeds]
            accuracy = [r["accuracy"] for r in group]
            steps = np.array([r["steps"] for r in group], dtype=float)
            epochs = np.array([r["epochs"] for r in group], dtype=float)
            same = "—"
            if recipe == "auto":
                constant = {s: by_key[(batch_size, "constant", s)]["proba"] for s in seeds}
                same = (
                    "yes"
                    if all(np.array_equal(r["proba"], constant[r["seed"]]) for r in group)
                    else "no"
                )
            delta = 100 * (np.mean(accuracy) - reference)
            rows.append(
                f"| {batch_size} | {recipe} | {_mean_std(accuracy)} | {delta:+.1f} "
                f"| {_mean_std([r['log_loss'] for r in group])} "
                f"| {steps.sum(1).mean():.0f} "
                f"({steps[:, 0].mean():.0f} + {steps[:, 1].mean():.0f}) "
                f"| {epochs[:, 0].mean():.0f} + {epochs[:, 1].mean():.0f} "
                f"| {_mean_std([r['seconds'] for r in group], 1)} | {same} |"
            )
    return rows


def results_section(runs, batch_sizes, seeds, *, command, elapsed, load, notes=()):
    lines = [
        *section_start(
            "large-batch",
            "Large batches: `lr_schedule` (learning rate scaled with the batch size)",
            command,
            f"{elapsed / 60:.1f} min",
            machine=f"{machine_description()}; {torch.get_num_threads()} torch thread(s); "
            f"load average {load[0]:.1f} at the start, {load[1]:.1f} at the end "
            "(the machine is shared, so fit times are indicative)",
        ),
        *(f"- {note}" for note in notes),
        (
            "- protocol: `load_kspace_digits()` (two (n, 1, 16, 15) image modalities, 2000 "
            "samples, 10 classes); per seed "
            f"({', '.join(map(str, seeds))}) a stratified 70/30 train/test split and "
            "`random_state=seed`; `I2M2Classifier(batch_size=..., lr_schedule=...)`, defaults "
            "otherwise (1190 training rows after the 15 % validation split, `max_epochs=100`, "
            "`n_iter_no_change=10`, `lr=1e-3`). Mean ± std over seeds of the test accuracy and "
            "log loss (after temperature scaling), the optimizer steps of stage 1 + stage 2, "
            "the epochs run, and the wall time of `fit`. Δ: accuracy difference to batch "
            f"{batch_sizes[0]} with the constant rate, in points."
        ),
        "",
        (
            "Recipes: `constant` and `auto` are `lr_schedule`; `sqrt` is "
            '`lr_schedule="constant", callbacks=[LargeBatchLR(scaling="sqrt")]` (the '
            "square-root rule of Adam, with the same warm-up); `sqrt, √k × epochs` also "
            "multiplies `max_epochs` and `n_iter_no_change` by √k, k = min(batch, 1190) / 256."
        ),
        "",
        (
            "| batch size | recipe | test accuracy | Δ (pt) | test log loss "
            "| optimizer steps (stage 1 + 2) | epochs (stage 1 + 2) | fit time (s) "
            "| same model as `constant` |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
        *summary_rows(runs, batch_sizes, seeds),
        "<!-- large-batch:end -->",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[32, 256, 1024],
        help="the first is the reference of the Δ column",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--no-variants", action="store_true", help="only lr_schedule='constant' and 'auto'"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--device", default="cpu", help="device of every fit (e.g. cuda)")
    parser.add_argument(
        "--n-samples", type=int, default=None, help="stratified subsample of the 2000 rows"
    )
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="max_epochs of every fit (default 100)"
    )
    parser.add_argument(
        "--output", default=str(RESULTS), help="the RESULTS.md to update (default: next to this)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    X, y = load_kspace_digits()
    X = {m: np.asarray(v) for m, v in X.items()}
    notes = []
    if args.device != "cpu":
        notes.append(f"device: `{args.device}`")
    if args.n_samples is not None and args.n_samples < len(y):
        rows, _ = train_test_split(
            np.arange(len(y)), train_size=args.n_samples, stratify=y, random_state=0
        )
        X, y = {m: v[rows] for m, v in X.items()}, y[rows]
        notes.append(f"a stratified subsample of {len(y)} rows, not 2000")
    if args.max_epochs is not None:
        notes.append(f"`max_epochs={args.max_epochs}`, not 100")
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    runs = []
    for seed in args.seeds:
        n_train = len(split(y, seed)[0])
        n_train -= math.ceil(0.15 * n_train)  # the validation split
        for batch_size in args.batch_sizes:
            for recipe, params in recipes(batch_size, n_train, not args.no_variants).items():
                if args.max_epochs is not None:
                    params = {**params, "max_epochs": args.max_epochs}
                run = fit_one(X, y, batch_size, recipe, params, seed, args.device)
                runs.append(run)
                print(
                    f"batch {batch_size:5d}  {recipe:18s}  seed {seed}  "
                    f"accuracy {run['accuracy']:.4f}  steps {run['steps']}  "
                    f"epochs {run['epochs']}  {run['seconds']:.1f} s",
                    flush=True,
                )
    section = results_section(
        runs,
        args.batch_sizes,
        args.seeds,
        command=script_command("large_batch"),
        elapsed=time.perf_counter() - start,
        load=(load_start, os.getloadavg()[0]),
        notes=notes,
    )
    print(section)
    if not args.no_write:
        write_results(section, args.output, name="large-batch")


if __name__ == "__main__":
    main()
