"""
A grid search on a Dask cluster
===============================

A hyperparameter search is many independent fits: scikit-learn hands them
to ``joblib``, and ``joblib.parallel_backend("dask")`` sends them to the
workers of a Dask cluster instead of local processes. Nothing else changes:
the same ``GridSearchCV``, the same estimator, the same scores as
``n_jobs=1`` with the same seeds. The data set (a
:class:`~sk_i2m2.ModalityDict`) is scattered to the workers once per
search, not shipped with every fit, and each worker's fits use that
worker's share of the CPUs (see the user guide's *Scaling out* page).

Here the cluster is a ``LocalCluster`` of 2 worker processes on this
machine; pointing the ``Client`` at a scheduler's address runs the same
code on a real cluster. The example needs ``pip install sk-i2m2[dask]``;
without it, it says so and runs the search on one process.
"""

import joblib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from sk_i2m2 import I2M2Classifier
from sk_i2m2.datasets import load_mfeat

N_SAMPLES, MAX_EPOCHS, N_FOLDS = 2000, 50, 4
GRID = {"lr": [1e-3, 3e-3, 1e-2], "fusion": ["concat", "lrtf"]}
# sphinx_gallery_start_ignore
# Documentation builds and smoke tests set SK_I2M2_DOCS_FAST=1: a quick, rough run.
import os

FAST = os.environ.get("SK_I2M2_DOCS_FAST") == "1"
if FAST:
    N_SAMPLES, MAX_EPOCHS, N_FOLDS = 200, 3, 2
    GRID = {"lr": [3e-3, 1e-2]}
# sphinx_gallery_end_ignore

# %%
# The search
# ----------
# Two views of the UCI Multiple Features digits. Everything at module level
# must be cheap: with ``processes=True``, each worker process imports this
# script again (as Python's ``spawn`` does), which is also why the cluster
# is started under ``if __name__ == "__main__"``.
X, y = load_mfeat(["fou", "zer"])
# The file is sorted by digit: take a random subset, not the first rows.
shuffled = np.random.RandomState(0).permutation(len(y))
rows = shuffled[:N_SAMPLES]
X, y = X[rows], y[rows]
search = GridSearchCV(
    I2M2Classifier(max_epochs=MAX_EPOCHS, cv=None, random_state=0),
    GRID,
    cv=StratifiedKFold(N_FOLDS, shuffle=True, random_state=0),
    n_jobs=-1,
)

# %%
# On a local Dask cluster
# -----------------------
if __name__ == "__main__":
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        print(
            "dask.distributed is not installed (pip install sk-i2m2[dask]): ",
            end="",
        )
        print("the search runs on this process instead.")
        search.set_params(n_jobs=1).fit(X, y)
    else:
        with (
            LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
            ) as cluster,
            Client(cluster) as client,
            joblib.parallel_backend("dask"),
        ):
            print(client)
            search.fit(X, y)

    results = pd.DataFrame(search.cv_results_)
    columns = ["params", "mean_test_score", "std_test_score", "mean_fit_time"]
    print(results[columns].to_string(index=False))
    print("best:", search.best_params_, f"accuracy {search.best_score_:.3f}")

    fig, ax = plt.subplots(figsize=(6, 3))
    labels = [
        ", ".join(f"{k}={v}" for k, v in p.items()) for p in results["params"]
    ]
    ax.barh(labels, results["mean_test_score"], xerr=results["std_test_score"])
    ax.set_xlabel("mean cross-validated accuracy")
    ax.set_title("GridSearchCV on a 2-worker Dask cluster")
    fig.tight_layout()
    plt.show()
