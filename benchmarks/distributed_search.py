"""Wall time of one GridSearchCV on 1 process against a 2-worker Dask cluster and Ray.

The search is 24 fits: 3 learning rates x 2 fusions x 4 folds of
``I2M2Classifier`` on two views of the UCI Multiple Features digits
(``fou`` and ``zer``, 2000 samples, 10 classes), with few epochs. It runs
with ``n_jobs=1``, then under ``joblib.parallel_backend("dask")`` on a
``LocalCluster(n_workers=2, threads_per_worker=1)`` and under
``joblib.parallel_backend("ray")`` on ``ray.init(num_cpus=2)`` (each engine
skipped when not installed). Every run must give the same scores; the
table gives each engine's wall time (cluster start-up excluded, the
workers' first imports included) and its speed-up over 1 process.

(The file is not named ``distributed.py``: run as a script, it would be
imported in place of Dask's ``distributed`` package.)

It writes its section of ``RESULTS.md`` next to this file (between the
``distributed`` markers), whatever the working directory.

Usage, from the repository root::

    python -m benchmarks.distributed_search                      # 24 fits, 20 epochs, a few minutes
    python -m benchmarks.distributed_search --max-epochs 2 --n-samples 300 --no-write   # smoke run
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import joblib
import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from benchmarks.common import (
    RESULTS,
    machine_description,
    script_command,
    section_start,
    write_results,
)
from sk_i2m2 import I2M2Classifier, ModalityDict
from sk_i2m2.datasets import load_mfeat

GRID = {"lr": [1e-3, 3e-3, 1e-2], "fusion": ["concat", "lrtf"]}
N_FOLDS = 4


def search(X, y, max_epochs, n_jobs):
    """The 24-fit grid search; returns its per-split test scores and wall time."""
    estimator = I2M2Classifier(max_epochs=max_epochs, cv=None, random_state=0)
    folds = StratifiedKFold(N_FOLDS, shuffle=True, random_state=0)
    start = time.perf_counter()
    grid = GridSearchCV(estimator, GRID, cv=folds, refit=False, n_jobs=n_jobs).fit(X, y)
    elapsed = time.perf_counter() - start
    scores = np.stack([grid.cv_results_[f"split{i}_test_score"] for i in range(N_FOLDS)])
    return scores, elapsed


def run_dask(X, y, max_epochs):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        return None
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster),
        joblib.parallel_backend("dask"),
    ):
        return search(X, y, max_epochs, n_jobs=-1)


def run_ray(X, y, max_epochs):
    try:
        import ray
        from ray.util.joblib import register_ray
    except ImportError:
        return None
    register_ray()
    root = str(Path(__file__).resolve().parents[1])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        # Loopback only: by default Ray's services bind the machine's address.
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {"PYTHONPATH": root}},
    )
    try:
        with joblib.parallel_backend("ray"):
            return search(X, y, max_epochs, n_jobs=-1)
    finally:
        ray.shutdown()


def results_section(rows, *, command, n_samples, max_epochs, load):
    lines = [
        *section_start(
            "distributed",
            "Distributed search: GridSearchCV on 1 process, Dask and Ray",
            command,
            machine=f"{machine_description()}; {torch.get_num_threads()} torch thread(s) in "
            f"the main process; load average {load[0]:.1f} at the start, {load[1]:.1f} at the end",
        ),
        f"- protocol: `load_mfeat(['fou', 'zer'])` ({n_samples} samples, 10 classes); "
        f"`GridSearchCV(I2M2Classifier(max_epochs={max_epochs}, cv=None, random_state=0), "
        f"{GRID}, cv=StratifiedKFold({N_FOLDS}, shuffle=True, random_state=0), refit=False)`, "
        f"{len(GRID['lr']) * len(GRID['fusion']) * N_FOLDS} fits. Dask: "
        "`LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`; Ray: "
        "`ray.init(num_cpus=2)`; both through `joblib.parallel_backend`. Wall time of "
        "`fit` (cluster start-up excluded, the workers' first imports of torch and "
        "sk-i2m2 included).",
        "",
        "| engine | workers | wall time (s) | speed-up | same scores as 1 process |",
        "|---|---|---|---|---|",
    ]
    reference_scores, reference_time = rows[0][2]
    for name, workers, result in rows:
        if result is None:
            lines.append(f"| {name} | {workers} | not installed | | |")
            continue
        scores, elapsed = result
        same = "yes" if np.array_equal(scores, reference_scores) else "no"
        lines.append(
            f"| {name} | {workers} | {elapsed:.1f} | {reference_time / elapsed:.2f} | {same} |"
        )
    lines.append("<!-- distributed:end -->")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--n-samples", type=int, default=2000, help="rows of mfeat used")
    parser.add_argument("--no-write", action="store_true", help="print, do not write RESULTS.md")
    args = parser.parse_args(argv)
    # As in a worker (engines give each one thread): the same arithmetic
    # everywhere, so that the scores can be compared exactly.
    torch.set_num_threads(1)
    X, y = load_mfeat(["fou", "zer"])
    rows = np.random.RandomState(0).permutation(len(y))[: args.n_samples]
    X, y = ModalityDict(X)[rows], y[rows]
    load_start = os.getloadavg()[0]
    results = [("1 process", 1, search(X, y, args.max_epochs, n_jobs=1))]
    results.append(("Dask", 2, run_dask(X, y, args.max_epochs)))
    results.append(("Ray", 2, run_ray(X, y, args.max_epochs)))
    section = results_section(
        results,
        command=script_command("distributed_search"),
        n_samples=len(y),
        max_epochs=args.max_epochs,
        load=(load_start, os.getloadavg()[0]),
    )
    print(section)
    if not args.no_write:
        write_results(section, RESULTS, name="distributed")


if __name__ == "__main__":
    main()
