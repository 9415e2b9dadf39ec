"""Multilabel outcomes: I2M2 against per-label scikit-learn baselines, for RESULTS.md.

Two multilabel data sets, each over several seeds of a 70/30 train/test split:

1. **mfeat, four derived findings.** The handwritten digits of
   :func:`~sk_i2m2.datasets.load_mfeat` (views fou, zer, mor) with four
   binary labels derived from the digit: even, at least 5, prime, drawn
   with a closed loop (0, 4, 6, 8, 9): several correlated outcomes per
   sample, as the four findings of the paper's fastMRI task.
2. **Synthetic, intra and inter labels.** Two Gaussian views; label 0
   depends on view ``a`` alone, label 1 on view ``b`` alone, label 2 on
   the sign agreement of one feature of each (an inter-modality label
   that no single view predicts), each with 10 % of labels flipped.

Models: ``I2M2Classifier`` with default hyperparameters (a multilabel ``y``
trains one Bernoulli expert per modality and label);
``MultiOutputClassifier(LogisticRegression)`` on the standardised
concatenated views; ``MultiOutputClassifier(HistGradientBoostingClassifier)``
(gradient boosting per label) on the concatenated views. Metrics on the
test split: subset accuracy (every label right), macro AUROC over labels
and the mean over labels of the binary log loss.

It writes its section of ``RESULTS.md`` next to this file.

Usage, from the repository root::

    python -m benchmarks.targets            # 5 seeds, default settings (about 30 min on 2 cores)
    python -m benchmarks.targets --quick    # 1 seed, 5 epochs, 20 boosting rounds, 600 samples
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmarks.common import (
    RESULTS,
    flatten,
    multilabel_positive_proba,
    multilabel_scores,
    multilabel_table,
    script_command,
    section_start,
    write_results,
)
from sk_i2m2 import I2M2Classifier
from sk_i2m2.datasets import load_mfeat

VIEWS = ["fou", "zer", "mor"]
FINDINGS = ["even", "at least 5", "prime", "closed loop"]
MODELS = ["I2M2", "logistic regression per label", "gradient boosting per label"]


def mfeat_findings():
    """mfeat fou+zer+mor with the four binary findings of each digit."""
    X, digit = load_mfeat(VIEWS)
    Y = np.c_[
        digit % 2 == 0,
        digit >= 5,
        np.isin(digit, [2, 3, 5, 7]),
        np.isin(digit, [0, 4, 6, 8, 9]),
    ].astype(int)
    return X, Y


def synthetic_multilabel(n_samples=2000, flip=0.1, random_state=0):
    """Two views; labels from view a, from view b, and from both (sign agreement)."""
    rng = np.random.RandomState(random_state)
    X = {"a": rng.randn(n_samples, 10), "b": rng.randn(n_samples, 10)}
    Y = np.c_[
        X["a"][:, :3].sum(1) > 0,
        X["b"][:, :3].sum(1) > 0,
        (X["a"][:, 3] > 0) == (X["b"][:, 3] > 0),
    ].astype(int)
    flipped = rng.rand(*Y.shape) < flip
    return X, np.where(flipped, 1 - Y, Y)


def run(data, seeds, params, n_samples=None, hgb_params=None):
    results = []
    X, Y = data
    if n_samples is not None and n_samples < len(Y):
        # mfeat is sorted by digit: a random subset, the same for every seed.
        rows = np.random.RandomState(0).permutation(len(Y))[:n_samples]
        X, Y = {k: v[rows] for k, v in X.items()}, Y[rows]
    for seed in seeds:
        train, test = train_test_split(np.arange(len(Y)), test_size=0.3, random_state=seed)
        X_tr, X_te = {k: v[train] for k, v in X.items()}, {k: v[test] for k, v in X.items()}
        models = {
            "I2M2": (I2M2Classifier(random_state=seed, **params), X_tr, X_te),
            "logistic regression per label": (
                make_pipeline(
                    StandardScaler(), MultiOutputClassifier(LogisticRegression(max_iter=2000))
                ),
                flatten(X_tr, np.float64),
                flatten(X_te, np.float64),
            ),
            "gradient boosting per label": (
                MultiOutputClassifier(
                    HistGradientBoostingClassifier(random_state=seed, **(hgb_params or {}))
                ),
                flatten(X_tr, np.float64),
                flatten(X_te, np.float64),
            ),
        }
        for name, (model, fit_X, test_X) in models.items():
            start = time.perf_counter()
            model.fit(fit_X, Y[train])
            seconds = time.perf_counter() - start
            row = {"seed": seed, "model": name, "fit_s": seconds}
            row.update(multilabel_scores(Y[test], multilabel_positive_proba(model, test_X)))
            results.append(row)
    return results


def section(results, *, command, minutes, seeds, params, n_samples, hgb_params):
    subset = f" ({n_samples} samples drawn at random)" if n_samples else ""
    lines = [
        *section_start(
            "targets",
            "Multilabel outcomes: I2M2 against per-label baselines",
            command,
            f"{minutes:.1f} min",
        ),
        f"- protocol: seeds {list(seeds)}, a random 70/30 train/test split per seed"
        f"{subset}; `I2M2Classifier` with default hyperparameters"
        f"{' and ' if params else ''}{', '.join(f'{k}={v}' for k, v in params.items())}; "
        "logistic regression on the standardised concatenated views and gradient "
        f"boosting ({', '.join(f'{k}={v}' for k, v in hgb_params.items()) or 'defaults'}) "
        "on the concatenated views, one model per label "
        "(`MultiOutputClassifier`). Mean ± std over seeds.",
        "",
        f"### mfeat {'+'.join(VIEWS)}, four findings of the digit ({', '.join(FINDINGS)})",
        "",
        *multilabel_table(results["mfeat"], MODELS),
        "",
        "### Synthetic: a label per view and one from both views (10 % flipped)",
        "",
        *multilabel_table(results["synthetic"], MODELS),
        "",
        "Subset accuracy counts a sample as right only when all its labels are. "
        "The synthetic third label needs both views at once, so per-label models on "
        "concatenated features can learn it only as an interaction.",
        "<!-- targets:end -->",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1 seed, 5 epochs, 20 boosting rounds, 600 samples"
    )
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5)")
    args = parser.parse_args(argv)
    seeds = range(args.seeds or (1 if args.quick else 5))
    params = dict(max_epochs=5, cv=None) if args.quick else {}
    n_samples = 600 if args.quick else None
    hgb_params = dict(max_iter=20) if args.quick else {}
    start = time.perf_counter()
    results = {
        "mfeat": run(mfeat_findings(), seeds, params, n_samples, hgb_params),
        "synthetic": run(synthetic_multilabel(), seeds, params, n_samples, hgb_params),
    }
    minutes = (time.perf_counter() - start) / 60
    command = script_command("targets", argv)
    text = section(
        results,
        command=command,
        minutes=minutes,
        seeds=seeds,
        params=params,
        n_samples=n_samples,
        hgb_params=hgb_params,
    )
    write_results(text, RESULTS, name="targets")
    print(text)


if __name__ == "__main__":
    main()
