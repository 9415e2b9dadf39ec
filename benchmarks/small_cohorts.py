"""Small cohorts: I2M2Classifier against the models a statistician would fit.

Run from the repository root::

    python -m benchmarks.small_cohorts            # all sets, 20 seeds
    python -m benchmarks.small_cohorts --quick    # 3 seeds, fewer sets

and the section between ``<!-- small:start -->`` and ``<!-- small:end -->`` of
``benchmarks/RESULTS.md`` is rewritten.

Protocol (per data set and seed ``s`` in 0..19): data sets built from a fixed
pool (breast cancer, mfeat, digits) are first subsampled to ``n`` rows with a
stratified draw (``train_test_split(train_size=n, stratify=y,
random_state=s)``; skipped when ``n`` is the whole pool); synthetic sets are
drawn afresh with ``n_samples=n, random_state=s``. The ``n`` rows are then
split 70/30 into train and test (``train_test_split(test_size=0.3,
stratify=y, random_state=s)``). Every model is fitted on the training rows
with ``random_state=s`` where it has one, and scored on the test rows.

Models:

- ``I2M2``, ``I2M2 intra``, ``I2M2 inter``: ``I2M2Classifier(random_state=s)``
  with its defaults (``dependencies="both"``, ``"intra"``, ``"inter"``);
- ``LR concat``: ``StandardScaler`` + ``LogisticRegression`` (default ``C=1``)
  on all views concatenated (images flattened);
- ``LR product``: one such pipeline per view; their product (softmax of the
  summed log-probabilities, the normalised product of experts);
- ``HGB concat``: ``HistGradientBoostingClassifier(random_state=s)`` on the
  concatenation;
- ``regime: patience 10``, ``regime: weight_decay 1e-4, patience 10``: the
  small-cohort defaults with 10 epochs of patience, and with the penalty and
  patience of the mini-batch defaults (only with ``--models``);
- ``regime: calibration temperature``: the defaults with one temperature
  instead of the expert weights of ``calibration="auto"`` (only with
  ``--models``);
- ``regime: stopping threshold 1e-4``: the defaults with stage 1's
  stopping threshold at 1e-4 instead of the classifier's 1 % (only with
  ``--models``);
- ``regime: linear solve tolerance 1e-6``: the linear experts solved to a
  largest gradient entry of 1e-6 instead of scikit-learn's ``tol`` of 1e-4
  (only with ``--models``);
- ``regime: L2 grid C 0.01-1 x5``, ``regime: L2 grid C 0.01-10``: the
  linear experts choose their penalty from ``C`` of 0.01, 1/30, 0.1, 1/3
  and 1, or of 0.01, 0.1, 1 and 10, instead of 0.01, 0.1 and 1 (only with
  ``--models``);
- ``regime: patience 5``: ``n_iter_no_change=5`` (only with ``--models``);
- ``regime: patience 3``, ``regime: patience 2``: L-BFGS fits with 3 or 2
  epochs of patience instead of the classifier's 1 (a mini-batch fit keeps
  its 10; only with ``--models``);
- ``regime: cv 3``: 3 cross-fitted folds instead of 5 (only with ``--models``);
- ``regime: ...``: prototype fitting regimes from ``small_regimes.py``
  (only with ``--models``).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from benchmarks.common import (
    RESULTS,
    breast_cancer_views,
    classification_scores,
    digits_image_table,
    hgb_concat,
    logistic_concat,
    logistic_cv_concat,
    logistic_product,
    mfeat_views,
    mlp_concat,
    patched,
    run_tasks,
    script_command,
    summarize_seeds,
    synthetic_classification,
    warm_up,
    write_results,
)

SECTION = "small"
TEST_SIZE = 0.3


# ----------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class SmallSet:
    title: str
    pool: object  # () -> (X, y) full pool, or None for a generated set
    n: int
    make: object = None  # (n, seed) -> (X, y) for generated sets
    description: str = ""


def _synthetic(intra, inter):
    def make(n, seed):
        return synthetic_classification(n, intra, inter, seed)

    return make


def _sets():
    sets = {}
    for n in (80, 150, 569):
        sets[f"bc-{n}"] = SmallSet(
            f"breast cancer n={n}",
            breast_cancer_views,
            n,
            description="load_breast_cancer() as three views of 10 features: mean, error "
            "and worst values of the nuclei measurements; 2 classes",
        )
    for views in (("fou", "zer"), ("mor", "zer")):
        for n in (100, 300):
            sets[f"mfeat-{'-'.join(views)}-{n}"] = SmallSet(
                f"mfeat {'+'.join(views)} n={n}",
                functools.partial(mfeat_views, views),
                n,
                description=f"load_mfeat({list(views)}): UCI Multiple Features digits, 10 classes",
            )
    for regime, (intra, inter) in {
        "intra": (0.7, 0.0),
        "inter": (0.0, 2.0),
        "mixed": (0.5, 1.5),
    }.items():
        for n in (100, 200):
            sets[f"synthetic-{regime}-{n}"] = SmallSet(
                f"synthetic {regime} n={n}",
                None,
                n,
                make=_synthetic(intra, inter),
                description=f"make_multimodal_classification(n, 2 modalities x 10 features, "
                f"intra_strength={intra}, inter_strength={inter}), drawn per seed; "
                "2 classes",
            )
    for n in (150, 300):
        sets[f"digits-{n}"] = SmallSet(
            f"digits image+table n={n}",
            digits_image_table,
            n,
            description="load_digits(): the 8x8 image (n, 1, 8, 8), ink / 16, and a table of "
            "its 8 row and 8 column ink sums; 10 classes",
        )
    return sets


SETS = _sets()
QUICK_SETS = [
    "bc-80",
    "bc-150",
    "mfeat-fou-zer-100",
    "mfeat-mor-zer-300",
    "synthetic-intra-100",
    "synthetic-mixed-200",
    "digits-150",
]


def load_split(name, seed):
    """``X_train, X_test, y_train, y_test`` of data set ``name`` for ``seed``."""
    from sklearn.model_selection import train_test_split

    spec = SETS[name]
    if spec.make is not None:
        X, y = spec.make(spec.n, seed)
    else:
        X, y = spec.pool()
        if spec.n < len(y):
            rows, _ = train_test_split(
                np.arange(len(y)), train_size=spec.n, stratify=y, random_state=seed
            )
            X, y = {m: x[rows] for m, x in X.items()}, y[rows]
    rows_train, rows_test = train_test_split(
        np.arange(len(y)), test_size=TEST_SIZE, stratify=y, random_state=seed
    )
    return (
        {m: x[rows_train] for m, x in X.items()},
        {m: x[rows_test] for m, x in X.items()},
        y[rows_train],
        y[rows_test],
    )


# ----------------------------------------------------------------------
# Models: name -> fit(X_train, y_train, seed) -> {suffix: (predict_proba, fit_seconds)}


def _sklearn(fit):
    """A baseline of ``benchmarks.common``, timed by :func:`run_task`."""
    return lambda X, y, seed: {"": fit(X, y, seed)}


def _i2m2(patch=None, **params):
    """``I2M2Classifier(random_state=seed, **params)``, timed.

    ``patch`` maps the dotted names of internal constants (not parameters:
    e.g. an outcome's stopping threshold) to the values a regime row uses
    for its fit only.
    """

    def fit(X, y, seed):
        from sk_i2m2 import I2M2Classifier

        with patched(patch):
            start = time.perf_counter()
            clf = I2M2Classifier(random_state=seed, **params).fit(X, y)
            seconds = time.perf_counter() - start
        return {"": (clf.predict_proba, seconds, _stage_seconds(clf))}

    return fit


def _stage_seconds(clf):
    """Seconds spent in each stage's epochs, summed over the fold models.

    A stage with nothing to train (every expert solved before it) has no epochs.
    """
    nets = clf.fold_nets_ or [(clf.pretrain_net_, clf.finetune_net_)]
    return {
        stage: sum(
            sum(net.history[:, "dur"]) for net in stage_nets if net is not None and net.history
        )
        for stage, stage_nets in zip(("stage1", "stage2"), zip(*nets))
    }


def _regime(name, capacity=None, **kwargs):
    """A prototype regime of ``small_regimes.py`` (imported lazily: it needs sk_i2m2)."""

    def fit(X, y, seed):
        from benchmarks import small_regimes

        params = dict(kwargs)
        if capacity is not None:
            params.update(small_regimes.capacity_params(X, capacity))
        return getattr(small_regimes, f"regime_{name}")(X, y, seed, **params)

    return fit


MODELS = {
    "I2M2": _i2m2(),
    "I2M2 intra": _i2m2(dependencies="intra"),
    "I2M2 inter": _i2m2(dependencies="inter"),
    "LR concat": _sklearn(logistic_concat),
    "LR product": _sklearn(logistic_product),
    "LRCV concat": _sklearn(logistic_cv_concat),
    "HGB concat": _sklearn(hgb_concat),
    "MLP concat": _sklearn(mlp_concat),
    # The L-BFGS defaults against their alternatives (weight_decay="auto" is
    # 1 / n_train and n_iter_no_change="auto" is 1 with L-BFGS).
    "regime: patience 10": _i2m2(n_iter_no_change=10),
    "regime: patience 5": _i2m2(n_iter_no_change=5),
    # Patience with L-BFGS only (a mini-batch fit keeps its 10): the former
    # 3 epochs, and 2.
    "regime: patience 3": _i2m2(
        patch={"sk_i2m2.outcomes.classes.ClassesOutcome.full_batch_patience": 3}
    ),
    "regime: patience 2": _i2m2(
        patch={"sk_i2m2.outcomes.classes.ClassesOutcome.full_batch_patience": 2}
    ),
    # Cross-fitting (cv="auto": 5 folds) with 3 folds: fewer, smaller fold models.
    "regime: cv 3": _i2m2(cv=3),
    "regime: weight_decay 1e-4, patience 10": _i2m2(weight_decay=1e-4, n_iter_no_change=10),
    # The calibration of the cross-fitted default ("auto": expert weights)
    # against one temperature, the default before expert weights.
    "regime: calibration temperature": _i2m2(calibration="temperature"),
    # Stage 1's stopping rule for log losses (1 % relative) against 1e-4.
    "regime: stopping threshold 1e-4": _i2m2(
        patch={"sk_i2m2.outcomes.classes.LOG_LOSS_STOPPING_THRESHOLD": 1e-4}
    ),
    # The linear experts' solves at their former tolerance (the default is
    # scikit-learn's tol, 1e-4).
    "regime: linear solve tolerance 1e-6": _i2m2(
        patch={"sk_i2m2.training.linear_experts.SOLVER_TOL": 1e-6}
    ),
    # The linear experts' L2 grid (C of 0.01, 0.1, 1) against finer and wider ones.
    "regime: L2 grid C 0.01-1 x5": _i2m2(
        patch={"sk_i2m2.training.linear_experts.L2_GRID_FACTORS": (100.0, 30.0, 10.0, 3.0, 1.0)}
    ),
    "regime: L2 grid C 0.01-10": _i2m2(
        patch={"sk_i2m2.training.linear_experts.L2_GRID_FACTORS": (100.0, 10.0, 1.0, 0.1)}
    ),
    # Prototype regimes (small_regimes.py). The "cv" regimes return two
    # variants from the same inner folds: "cv" (refit on all rows for the
    # median fold epochs) and "bag" (geometric mean of the fold models).
    "regime: wd1e-1": _i2m2(weight_decay=1e-1),
    "regime: no finetune": _i2m2(finetune_epochs=0),
    "regime: small": _regime("defaults", "small"),
    "regime: small wd1e-2": _regime("defaults", "small", weight_decay=1e-2),
    "regime: linear": _regime("defaults", "linear"),
    "regime: cv": _regime("cv"),
    "regime: cv wd1e-2": _regime("cv", weight_decay=1e-2),
    "regime: cv long": _regime("cv", max_epochs=300),
    "regime: cv small": _regime("cv", "small"),
    "regime: cv small wd1e-2": _regime("cv", "small", weight_decay=1e-2),
    "regime: cv linear": _regime("cv", "linear"),
}
DEFAULT_MODELS = [
    "I2M2",
    "I2M2 intra",
    "I2M2 inter",
    "LR concat",
    "LR product",
    "LRCV concat",
    "HGB concat",
    "MLP concat",
]
#: The logistic baselines of the accuracy target.
LOGISTIC = ("LR concat", "LR product", "LRCV concat")


def run_task(name, seed, models):
    """Fit every model on one split; return one row per (model variant).

    Each fit runs with the threads a user gets: torch's default count, which
    sk-i2m2 lowers where the work is small; a small fit has run in the process
    before, so that no timed fit pays the first fit's set-up.
    """
    warm_up()
    X_train, X_test, y_train, y_test = load_split(name, seed)
    classes = np.unique(y_train)
    rows = []
    for model in models:
        start = time.perf_counter()
        out = MODELS[model](X_train, y_train, seed)
        seconds = time.perf_counter() - start
        for suffix, entry in out.items():
            info = {}
            if isinstance(entry, tuple):
                predict, seconds_v = entry[0], entry[1]
                info = entry[2] if len(entry) > 2 else {}
            else:
                predict, seconds_v = entry, seconds
            label = f"{model} {suffix}".strip() if suffix else model
            rows.append(
                {
                    "dataset": name,
                    "model": label,
                    "seed": seed,
                    **classification_scores(predict(X_test), classes, y_test),
                    "fit_seconds": seconds_v,
                    "stage1_seconds": info.get("stage1", np.nan),
                    "stage2_seconds": info.get("stage2", np.nan),
                }
            )
    return rows


METRICS = [
    "accuracy",
    "auroc",
    "log_loss",
    "ece",
    "fit_seconds",
    "stage1_seconds",
    "stage2_seconds",
]


def target_checks(summary, results):
    """Per set and candidate (``I2M2`` and any ``regime: ...``): the two targets.

    Targets: accuracy ≥ max(LR concat, LR product, LRCV concat) − 1 pt,
    and ≥ max(I2M2 intra, I2M2 inter) − 1 pt (the defaults' intra and inter
    models); log loss ≤ the best logistic baseline's; fit time ≤ 10x
    ``MLP concat``'s. Each accuracy difference comes with the standard
    error of its mean over the seeds, from the per-seed differences
    (``results``, one row per fit): the resolution of the 1-point check.
    """
    per_seed = results.pivot_table(index=["dataset", "seed"], columns="model", values="accuracy")
    checks = []
    for name in summary.index.get_level_values(0).unique():
        acc = summary.loc[name, "accuracy_mean"]
        seeds = per_seed.loc[name]
        for model in [m for m in acc.index if m == "I2M2" or m.startswith("regime: ")]:
            row = {"dataset": name, "candidate": model, "model": acc[model]}
            for key, pair in {
                "vs_lr": LOGISTIC,
                "vs_own": ("I2M2 intra", "I2M2 inter"),
            }.items():
                present = [m for m in pair if m in acc]
                if present:
                    reference = max(present, key=lambda m: acc[m])
                    best = acc[reference]
                    row[key] = acc[model] - best
                    row[key + "_ok"] = bool(acc[model] >= best - 0.01)
                    differences = seeds[model] - seeds[reference]
                    row[key + "_se"] = differences.std(ddof=1) / np.sqrt(len(differences))
            loss = summary.loc[name, "log_loss_mean"]
            logistic = [m for m in LOGISTIC if m in loss]
            if logistic:
                row["log_loss_ok"] = bool(loss[model] <= min(loss[m] for m in logistic))
            seconds = summary.loc[name, "fit_seconds_mean"]
            if "MLP concat" in seconds:
                row["time_ratio"] = seconds[model] / seconds["MLP concat"]
            checks.append(row)
    return checks


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"3 seeds on {len(QUICK_SETS)} sets")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 20)")
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        choices=list(SETS),
        metavar="NAME",
        help=f"data sets (default all: {', '.join(SETS)})",
    )
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        choices=list(MODELS),
        metavar="MODEL",
        help=f"models (default: {', '.join(DEFAULT_MODELS)}; "
        f"also {', '.join(m for m in MODELS if m not in DEFAULT_MODELS)})",
    )
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel processes")
    parser.add_argument("--raw", default=None, help="also write per-fit rows to this CSV")
    parser.add_argument(
        "--from-raw",
        nargs="+",
        default=None,
        metavar="CSV",
        help="rebuild the section from per-fit CSVs written by --raw (e.g. "
        "defaults and a regime run separately) instead of fitting",
    )
    parser.add_argument("--notes", default="", help="extra line for the protocol notes")
    parser.add_argument(
        "--output",
        default=str(RESULTS),
        help="RESULTS.md to update ('-' prints only)",
    )
    args = parser.parse_args(argv)

    import pandas as pd

    from benchmarks.small_cohorts_report import results_section

    seeds = args.seeds if args.seeds is not None else (3 if args.quick else 20)
    names = args.datasets or (QUICK_SETS if args.quick else list(SETS))
    models = args.models or DEFAULT_MODELS
    tasks = [(n, s) for n in names for s in range(seeds)]
    start = time.perf_counter()
    if args.from_raw:
        results = pd.concat([pd.read_csv(f) for f in args.from_raw], ignore_index=True)
        results = results[results["dataset"].isin(names) & (results["seed"] < seeds)]
        order = {n: i for i, n in enumerate(SETS)}
        results = results.sort_values("dataset", key=lambda c: c.map(order), kind="stable")
        elapsed = float(results.groupby(["dataset", "model"])["fit_seconds"].sum().sum())
    else:
        # By reference to the importable module, not to __main__.
        from benchmarks import small_cohorts

        rows = run_tasks(
            small_cohorts.run_task,
            [(n, s, models) for n, s in tasks],
            args.n_jobs,
            lambda r: (
                f"{r['dataset']:<22} {r['model']:<26} seed {r['seed']}: acc "
                f"{r['accuracy']:.3f} ll {r['log_loss']:.3f} ({r['fit_seconds']:.1f}s)"
            ),
        )
        elapsed = time.perf_counter() - start
        results = pd.DataFrame(rows)
    if args.raw:
        results.to_csv(args.raw, index=False)
    summary = summarize_seeds(results, METRICS)
    checks = target_checks(summary, results)
    pd.set_option("display.width", 200)
    print(
        summary[["accuracy_mean", "accuracy_std", "log_loss_mean", "fit_seconds_mean"]]
        .round(3)
        .to_string()
    )
    for c in checks:
        print(
            f"target {c['dataset']:<22} {c['candidate']:<22} {c['model']:.3f}  "
            + "  ".join(
                f"{k} {100 * c[k]:+.1f} {'ok' if c[k + '_ok'] else 'MISS'}"
                for k in ("vs_lr", "vs_own")
                if k in c
            )
        )
    shown = list(argv if argv is not None else sys.argv[1:])
    if "--notes" in shown:  # the notes get a line of their own
        i = shown.index("--notes")
        del shown[i : i + 2]
    shown = [os.path.basename(a) if a.endswith(".csv") else a for a in shown]
    command = script_command("small_cohorts", shown)
    section = results_section(
        summary,
        checks,
        command=command,
        seeds=list(range(seeds)),
        elapsed=elapsed,
        notes=args.notes,
        results=results,
    )
    if args.output != "-":
        write_results(section, args.output, name=SECTION)
        print(f"Wrote {args.output} in {elapsed / 60:.1f} min.")
    return summary


if __name__ == "__main__":
    main()
