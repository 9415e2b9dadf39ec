"""Fit time of a small cohort on each device: a GPU must not make a 200-patient fit slower.

One data set of ``small_cohorts.py`` (default ``synthetic-mixed-200``: 200
rows, 140 of them for training), split as there (seed ``s``: the set's draw
and its 70/30 split), fitted with ``I2M2Classifier(random_state=s,
device=...)``, default settings otherwise, on each device in turn, in one
process. Per device: the first fit in the process (it pays the one-off
costs a user's first fit pays too: CUDA context, kernels, cuDNN), then one
fit per seed, whose median is the figure. The last line printed is
``small-cohort ratio <median fit time on the last device / on the first>``.

Usage, from the repository root::

    python -m benchmarks.small_cohort_devices                 # cpu, cuda; 3 seeds
    python -m benchmarks.small_cohort_devices --devices cpu --seeds 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import small_cohorts
from sk_i2m2 import I2M2Classifier


def time_fits(name, device, seeds):
    """``{"first": seconds, "fits": [seconds per seed], "accuracy": [...], "epochs": [...]}``."""
    X_train, X_test, y_train, y_test = small_cohorts.load_split(name, 0)
    start = time.perf_counter()
    I2M2Classifier(random_state=0, device=device).fit(X_train, y_train)
    found = {"first": time.perf_counter() - start, "fits": [], "accuracy": [], "epochs": []}
    for seed in range(seeds):
        X_train, X_test, y_train, y_test = small_cohorts.load_split(name, seed)
        clf = I2M2Classifier(random_state=seed, device=device)
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        found["fits"].append(time.perf_counter() - start)
        found["accuracy"].append(clf.score(X_test, y_test))
        found["epochs"].append(
            " + ".join(
                str(len(net.history)) if net is not None else "0"
                for net in (clf.pretrain_net_, clf.finetune_net_)
            )
        )
    return found


def table(name, results):
    """A markdown table, one row per ``(device, found)`` of ``results``."""
    n_train = len(small_cohorts.load_split(name, 0)[2])
    lines = [
        f"Data set `{name}` ({small_cohorts.SETS[name].title}, {n_train} training rows); "
        "`I2M2Classifier(random_state=seed, device=...)`, defaults otherwise.",
        "",
        "| device | first fit in the process (s) | median fit (s) | fits (s) "
        "| test accuracy | epochs (stage 1 + 2) |",
        "|---|---|---|---|---|---|",
    ]
    for device, found in results:
        lines.append(
            f"| {device} | {found['first']:.2f} | {np.median(found['fits']):.2f} "
            f"| {', '.join(f'{s:.2f}' for s in found['fits'])} "
            f"| {np.mean(found['accuracy']):.3f} | {', '.join(found['epochs'])} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--dataset", default="synthetic-mixed-200", choices=list(small_cohorts.SETS)
    )
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--seeds", type=int, default=3, help="timed fits per device")
    parser.add_argument("--output", default=None, help="also write the table to this file")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    results = []
    for device in args.devices:
        found = time_fits(args.dataset, device, args.seeds)
        results.append((device, found))
        print(
            f"{device}: first fit {found['first']:.2f} s, median of {args.seeds} "
            f"{np.median(found['fits']):.2f} s, accuracy {np.mean(found['accuracy']):.3f}",
            flush=True,
        )
    text = table(args.dataset, results)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    first, last = results[0][1], results[-1][1]
    ratio = np.median(last["fits"]) / np.median(first["fits"])
    print(f"small-cohort ratio {ratio:.3f} ({args.devices[-1]} / {args.devices[0]})")


if __name__ == "__main__":
    main()
