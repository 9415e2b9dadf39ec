"""Small cohorts: I2M2Classifier against the models a statistician would fit.

Run from a source checkout::

    PYTHONPATH=. python benchmarks/small_cohorts.py            # all sets, 10 seeds
    PYTHONPATH=. python benchmarks/small_cohorts.py --quick    # 3 seeds, fewer sets

and the section between ``<!-- small:start -->`` and ``<!-- small:end -->`` of
``benchmarks/RESULTS.md`` is rewritten.

Protocol (per data set and seed ``s`` in 0..9): data sets built from a fixed
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
- ``regime: ...``: prototype fitting regimes from ``small_regimes.py``
  (only with ``--models``).
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comparison import expected_calibration_error, write_results

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


@functools.cache
def _breast_cancer():
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    names = [str(f) for f in data.feature_names]
    view_of = {f: "error" if f.endswith(" error") else f.split(" ")[0] for f in names}
    X = {
        view: data.data[:, [i for i, f in enumerate(names) if view_of[f] == view]].astype(
            np.float32
        )
        for view in ("mean", "error", "worst")
    }
    assert all(x.shape[1] == 10 for x in X.values())
    return X, data.target


@functools.cache
def _mfeat(views):
    from sk_i2m2.datasets import load_mfeat

    X, y = load_mfeat(list(views))
    return {m: np.asarray(X[m]) for m in views}, np.asarray(y)


@functools.cache
def _digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    images = data.images.astype(np.float32)  # (1797, 8, 8), ink 0..16
    table = np.concatenate([images.sum(axis=2), images.sum(axis=1)], axis=1) / 16.0
    return {"image": images[:, None] / 16.0, "table": table.astype(np.float32)}, data.target


def _synthetic(intra, inter):
    def make(n, seed):
        from sk_i2m2.datasets import make_multimodal_classification

        X, y = make_multimodal_classification(
            n_samples=n,
            n_modalities=2,
            n_features=10,
            intra_strength=intra,
            inter_strength=inter,
            random_state=seed,
        )
        return {m: np.asarray(X[m]) for m in X}, np.asarray(y)

    return make


def _sets():
    sets = {}
    for n in (80, 150, 569):
        sets[f"bc-{n}"] = SmallSet(
            f"breast cancer n={n}",
            _breast_cancer,
            n,
            description="load_breast_cancer() as three views of 10 features: mean, error "
            "and worst values of the nuclei measurements; 2 classes",
        )
    for views in (("fou", "zer"), ("mor", "zer")):
        for n in (100, 300):
            sets[f"mfeat-{'-'.join(views)}-{n}"] = SmallSet(
                f"mfeat {'+'.join(views)} n={n}",
                functools.partial(_mfeat, views),
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
            _digits,
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


def _flat(X):
    return np.concatenate([np.asarray(x).reshape(len(x), -1) for x in X.values()], axis=1)


def _logistic():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))


def _i2m2(**params):
    def fit(X, y, seed):
        from sk_i2m2 import I2M2Classifier

        start = time.perf_counter()
        clf = I2M2Classifier(random_state=seed, **params).fit(X, y)
        seconds = time.perf_counter() - start
        return {"": (clf.predict_proba, seconds, _stage_seconds(clf))}

    return fit


def _stage_seconds(clf):
    """Seconds spent in each stage's epochs, summed over the fold models."""
    nets = clf.fold_nets_ or [(clf.pretrain_net_, clf.finetune_net_)]
    return {
        stage: sum(sum(net.history[:, "dur"]) for net in stage_nets if net is not None)
        for stage, stage_nets in zip(("stage1", "stage2"), zip(*nets))
    }


def _lr_concat(X, y, seed):
    model = _logistic().fit(_flat(X), y)
    return {"": lambda Xn: model.predict_proba(_flat(Xn))}


def _lr_product(X, y, seed):
    from scipy.special import softmax

    models = {m: _logistic().fit(np.asarray(x).reshape(len(x), -1), y) for m, x in X.items()}

    def predict(Xn):
        logs = sum(
            m.predict_log_proba(np.asarray(Xn[k]).reshape(len(Xn[k]), -1))
            for k, m in models.items()
        )
        return softmax(logs, axis=1)

    return {"": predict}


def _lrcv_concat(X, y, seed):
    import warnings

    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with warnings.catch_warnings():
        # scikit-learn 1.9 announces new defaults; the current ones are measured.
        warnings.simplefilter("ignore", FutureWarning)
        model = make_pipeline(StandardScaler(), LogisticRegressionCV(max_iter=5000))
        model.fit(_flat(X), y)
    return {"": lambda Xn: model.predict_proba(_flat(Xn))}


def _mlp(X, y, seed):
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(
        StandardScaler(), MLPClassifier(early_stopping=True, random_state=seed)
    ).fit(_flat(X), y)
    return {"": lambda Xn: model.predict_proba(_flat(Xn))}


def _hgb(X, y, seed):
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(random_state=seed).fit(_flat(X), y)
    return {"": lambda Xn: model.predict_proba(_flat(Xn))}


def _regime(name, capacity=None, **kwargs):
    """A prototype regime of ``small_regimes.py`` (imported lazily: it needs sk_i2m2)."""

    def fit(X, y, seed):
        import small_regimes

        params = dict(kwargs)
        if capacity is not None:
            params.update(small_regimes.capacity_params(X, capacity))
        return getattr(small_regimes, f"regime_{name}")(X, y, seed, **params)

    return fit


MODELS = {
    "I2M2": _i2m2(),
    "I2M2 intra": _i2m2(dependencies="intra"),
    "I2M2 inter": _i2m2(dependencies="inter"),
    "LR concat": _lr_concat,
    "LR product": _lr_product,
    "LRCV concat": _lrcv_concat,
    "HGB concat": _hgb,
    "MLP concat": _mlp,
    # The L-BFGS defaults against their alternatives (weight_decay="auto" is
    # 1 / n_train and n_iter_no_change="auto" is 3 with L-BFGS).
    "regime: patience 10": _i2m2(n_iter_no_change=10),
    "regime: weight_decay 1e-4, patience 10": _i2m2(weight_decay=1e-4, n_iter_no_change=10),
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


def _scores(proba, y_test, classes):
    from sklearn.metrics import log_loss, roc_auc_score

    y_index = np.searchsorted(classes, y_test)
    proba = np.clip(proba, 1e-15, None)
    proba = proba / proba.sum(axis=1, keepdims=True)
    if proba.shape[1] == 2:
        auroc = roc_auc_score(y_index, proba[:, 1])
    else:
        auroc = roc_auc_score(
            y_index, proba, multi_class="ovr", average="macro", labels=np.arange(proba.shape[1])
        )
    return {
        "accuracy": float((proba.argmax(axis=1) == y_index).mean()),
        "auroc": float(auroc),
        "log_loss": float(log_loss(y_index, proba, labels=np.arange(proba.shape[1]))),
        "ece": expected_calibration_error(y_index, proba),
    }


def run_task(name, seed, models):
    """Fit every model on one split; return one row per (model variant).

    Each fit runs with the threads a user gets: torch's default count, which
    sk-i2m2 lowers where the work is small.
    """
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
                    **_scores(predict(X_test), y_test, classes),
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


def summarize(results):
    grouped = results.groupby(["dataset", "model"], sort=False)[METRICS]
    return grouped.mean().add_suffix("_mean").join(grouped.std(ddof=0).add_suffix("_std"))


def target_checks(summary):
    """Per set and candidate (``I2M2`` and any ``regime: ...``): the two targets.

    Targets: accuracy ≥ max(LR concat, LR product, LRCV concat) − 1 pt,
    and ≥ max(I2M2 intra, I2M2 inter) − 1 pt (the defaults' intra and inter
    models); log loss ≤ the best logistic baseline's; fit time ≤ 10x
    ``MLP concat``'s.
    """
    checks = []
    for name in summary.index.get_level_values(0).unique():
        acc = summary.loc[name, "accuracy_mean"]
        for model in [m for m in acc.index if m == "I2M2" or m.startswith("regime: ")]:
            row = {"dataset": name, "candidate": model, "model": acc[model]}
            for key, pair in {
                "vs_lr": LOGISTIC,
                "vs_own": ("I2M2 intra", "I2M2 inter"),
            }.items():
                present = [m for m in pair if m in acc]
                if present:
                    best = max(acc[m] for m in present)
                    row[key] = acc[model] - best
                    row[key + "_ok"] = bool(acc[model] >= best - 0.01)
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
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 10)")
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
        default=str(Path(__file__).parent / "RESULTS.md"),
        help="RESULTS.md to update ('-' prints only)",
    )
    args = parser.parse_args(argv)

    import pandas as pd
    from joblib import Parallel, delayed
    from small_cohorts_report import results_section

    seeds = args.seeds if args.seeds is not None else (3 if args.quick else 10)
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
        # Worker processes import this folder's modules (comparison, small_regimes).
        here = str(Path(__file__).resolve().parent)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (here, os.environ.get("PYTHONPATH")) if p
        )
        # By reference to the importable module, not to __main__.
        import small_cohorts

        jobs = Parallel(n_jobs=args.n_jobs, return_as="generator")(
            delayed(small_cohorts.run_task)(n, s, models) for n, s in tasks
        )
        rows = []
        for task_rows in jobs:
            for r in task_rows:
                print(
                    f"{r['dataset']:<22} {r['model']:<26} seed {r['seed']}: acc "
                    f"{r['accuracy']:.3f} ll {r['log_loss']:.3f} ({r['fit_seconds']:.1f}s)",
                    flush=True,
                )
            rows += task_rows
        elapsed = time.perf_counter() - start
        results = pd.DataFrame(rows)
    if args.raw:
        results.to_csv(args.raw, index=False)
    summary = summarize(results)
    checks = target_checks(summary)
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
    command = "PYTHONPATH=. python benchmarks/small_cohorts.py" + "".join(
        " " + shlex.quote(a) for a in shown
    )
    section = results_section(
        summary,
        checks,
        command=command,
        seeds=list(range(seeds)),
        elapsed=elapsed,
        notes=args.notes,
    )
    if args.output != "-":
        write_results(section, args.output, name=SECTION)
        print(f"Wrote {args.output} in {elapsed / 60:.1f} min.")
    return summary


if __name__ == "__main__":
    main()
