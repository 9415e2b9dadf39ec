"""A clinical GridSearchCV on small cohorts: 8 candidates x 5 folds, timed as users run it.

Run from the repository root::

    python -m benchmarks.small_search

On each set, ``GridSearchCV(I2M2Classifier(random_state=0), grid, cv=5)``
with 8 candidates (``dependencies`` both / intra, ``fusion`` concat / lrtf,
``weight_decay`` 1e-4 / 1e-2): 40 fits and a refit, in one process with
torch's default threads and ``n_jobs=None``, as a user runs it. Each search
is timed on the idle machine and again while a busy-loop process holds one
core, with ``n_jobs=None`` and again with ``n_jobs=2`` (one worker process a
core: a small-cohort fit runs one torch thread). Beside it, the same search over ``LogisticRegression`` (``C`` in 8
values) on the concatenated standardised views, the model a statistician
would tune instead.

Sets: scikit-learn's breast-cancer table as three views of 10 features
(mean, error and worst values; n = 569) and the digits 8x8 image with a
table of its row and column ink sums (n = 300, stratified subsample).

The section between ``<!-- small_search:start -->`` and
``<!-- small_search:end -->`` of ``benchmarks/RESULTS.md`` is rewritten.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import (
    RESULTS,
    busy_core,
    flatten,
    script_command,
    section_start,
    standard_logistic,
    write_results,
)
from benchmarks.small_cohorts import load_split

SECTION = "small_search"
TARGET_SECONDS = 60
GRID = {
    "dependencies": ["both", "intra"],
    "fusion": ["concat", "lrtf"],
    "weight_decay": [1e-4, 1e-2],
}
SETS = {"breast cancer views": "bc-569", "digits image+table": "digits-300"}


def search_data(name):
    """All rows of a small-cohort set (its train and test parts together)."""
    from sk_i2m2 import ModalityDict

    X_train, X_test, y_train, y_test = load_split(name, 0)
    X = ModalityDict({m: np.concatenate([X_train[m], X_test[m]]) for m in X_train})
    return X, np.concatenate([y_train, y_test])


def i2m2_search(X, y, n_jobs=None):
    from sklearn.model_selection import GridSearchCV

    from sk_i2m2 import I2M2Classifier

    search = GridSearchCV(I2M2Classifier(random_state=0), GRID, cv=5, n_jobs=n_jobs)
    start = time.perf_counter()
    search.fit(X, y)
    return time.perf_counter() - start, search.best_score_


def logistic_search(X, y):
    from sklearn.model_selection import GridSearchCV

    grid = {"logisticregression__C": np.logspace(-3, 4, 8)}
    search = GridSearchCV(standard_logistic(), grid, cv=5)
    start = time.perf_counter()
    search.fit(flatten(X), y)
    return time.perf_counter() - start, search.best_score_


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--output",
        default=str(RESULTS),
        help="RESULTS.md to update ('-' prints only)",
    )
    parser.add_argument(
        "--n-jobs",
        nargs="+",
        type=int,
        default=[1, 2],
        help="the searches' n_jobs values (1 is n_jobs=None)",
    )
    args = parser.parse_args(argv)
    rows = []
    for title, name in SETS.items():
        X, y = search_data(name)
        for n_jobs in args.n_jobs:
            for load in ("idle", "busy core"):
                with busy_core(load == "busy core"):
                    seconds, score = i2m2_search(X, y, n_jobs if n_jobs > 1 else None)
                    lr_seconds, lr_score = logistic_search(X, y)
                rows.append((title, len(y), n_jobs, load, seconds, score, lr_seconds, lr_score))
                print(
                    f"{title} (n_jobs={n_jobs}, {load}): I2M2 search {seconds:.1f}s "
                    f"(CV accuracy {score:.3f}), logistic search {lr_seconds:.2f}s "
                    f"({lr_score:.3f})",
                    flush=True,
                )
    lines = [
        *section_start(
            SECTION,
            "A clinical GridSearchCV: 8 candidates x 5 folds on small cohorts",
            script_command("small_search", argv),
        ),
        f"- grid: `{GRID}` over `I2M2Classifier(random_state=0)` defaults, `cv=5`, "
        "torch's default threads, in one process (`n_jobs` 1) or in `n_jobs` worker "
        "processes; the logistic search (one process) tunes `C` over 8 values "
        "(`np.logspace(-3, 4, 8)`) of `StandardScaler` + `LogisticRegression` on the "
        "concatenated views. Busy core: a busy-loop process beside the search.",
        f"- target: the I2M2 search in ≤ {TARGET_SECONDS} s on 2 cores.",
        "",
        "| data set | n | `n_jobs` | machine load | I2M2 search (s) | ok | best CV accuracy "
        "| logistic search (s) | best CV accuracy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for title, n, n_jobs, load, seconds, score, lr_seconds, lr_score in rows:
        ok = "yes" if seconds <= TARGET_SECONDS else "**no**"
        lines.append(
            f"| {title} | {n} | {n_jobs} | {load} | {seconds:.1f} | {ok} | {score:.3f} | "
            f"{lr_seconds:.2f} | {lr_score:.3f} |"
        )
    lines.append(f"<!-- {SECTION}:end -->")
    section = "\n".join(lines) + "\n"
    if args.output != "-":
        write_results(section, args.output, name=SECTION)
    print(section)


if __name__ == "__main__":
    main()
