"""Small multilabel cohorts: expert weights per label against one weight per expert.

Below 2,000 samples (1,000 for classes) a default multilabel
``I2M2Classifier`` is cross-fitted and its calibration weighs the experts
on the pooled held-out rows (``calibration="auto"``). A multilabel product
is taken label by label, and a modality often carries some labels and not
others, so each expert gets one weight per label. This script measures
that against one weight per expert (the same fit with the weights shared
by the labels), and the multilabel small-cohort size against the classes'
1,000, beside per-label scikit-learn baselines.

Data: the two sets of ``benchmarks/targets.py`` (mfeat's four findings of
the digit; the synthetic set whose labels come from view ``a``, from view
``b`` and from the sign agreement of both), ``n`` rows drawn at random
(the same rows for every seed), then a 70/30 train/test split per seed.

Models: ``I2M2`` (``I2M2Classifier(random_state=seed)``); ``I2M2, one
weight per expert`` (the same with
``LabelsOutcome.expert_weights_per_output`` patched to ``False``);
``I2M2, small-cohort defaults below 1,000 samples`` (the multilabel
outcome's ``small_cohort_size`` patched to the classes' 1,000: above it
one validation split, mini-batch AdamW and MLP experts; fitted only on
1,000 training rows or more, below which it is the default fit); ``I2M2,
patience 1 (the classes')`` (L-BFGS stages stopped after 1 epoch without
improvement, as a single-label classifier's, instead of 3); ``I2M2
intra`` and ``I2M2 inter`` (``dependencies`` ``"intra"`` and ``"inter"``:
I2M2 should be at least as good as the better of its own parts);
``logistic regression per label`` and ``gradient boosting per label`` as in
``targets.py``.

Usage, from the repository root::

    python -m benchmarks.multilabel_small              # 10 seeds, n of 300, 600, 1400, 2000
    python -m benchmarks.multilabel_small --seeds 2 --sizes 300 --output -
"""

from __future__ import annotations

import argparse
import sys
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
    patched,
    run_tasks,
    script_command,
    section_start,
    warm_up,
    write_results,
)
from benchmarks.targets import mfeat_findings, synthetic_multilabel

SECTION = "multilabel_small"
SETS = {
    "mfeat findings": mfeat_findings,
    "synthetic": synthetic_multilabel,
}
SHARED_WEIGHTS_MODEL = "I2M2, one weight per expert"
SMALL_COHORT_1000 = "I2M2, small-cohort defaults below 1,000 samples"
PATIENCE_1 = "I2M2, patience 1 (the classes')"
#: The I2M2 rows: model name -> (``I2M2Classifier`` parameters, internal
#: constants patched for the fit: dotted name -> value).
I2M2_MODELS = {
    "I2M2": ({}, {}),
    SHARED_WEIGHTS_MODEL: (
        {},
        {"sk_i2m2.outcomes.labels.LabelsOutcome.expert_weights_per_output": False},
    ),
    SMALL_COHORT_1000: ({}, {"sk_i2m2.outcomes.labels.LabelsOutcome.small_cohort_size": None}),
    PATIENCE_1: ({}, {"sk_i2m2.outcomes.labels.LabelsOutcome.full_batch_patience": 1}),
    "I2M2 intra": ({"dependencies": "intra"}, {}),
    "I2M2 inter": ({"dependencies": "inter"}, {}),
}
MODELS = [*I2M2_MODELS, "logistic regression per label", "gradient boosting per label"]


def _rows(name, n):
    """The ``n`` rows of set ``name`` every seed splits (a fixed random draw)."""
    X, Y = SETS[name]()
    rows = np.random.RandomState(0).permutation(len(Y))[:n]
    return {m: x[rows] for m, x in X.items()}, Y[rows]


def run_task(name, n, seed):
    """Every model on one train/test split; one result row each."""
    from sk_i2m2 import I2M2Classifier
    from sk_i2m2._sizing import is_small_cohort

    warm_up()
    X, Y = _rows(name, n)
    train, test = train_test_split(np.arange(len(Y)), test_size=0.3, random_state=seed)
    X_train, X_test = {m: x[train] for m, x in X.items()}, {m: x[test] for m, x in X.items()}
    flat_train, flat_test = flatten(X_train, np.float64), flatten(X_test, np.float64)
    models = {
        model: (I2M2Classifier(random_state=seed, **params), X_train, X_test, patches)
        for model, (params, patches) in I2M2_MODELS.items()
    }
    if is_small_cohort(len(train)):  # the same fit as "I2M2" there
        del models[SMALL_COHORT_1000]
    models["logistic regression per label"] = (
        make_pipeline(StandardScaler(), MultiOutputClassifier(LogisticRegression(max_iter=2000))),
        flat_train,
        flat_test,
        {},
    )
    models["gradient boosting per label"] = (
        MultiOutputClassifier(HistGradientBoostingClassifier(random_state=seed)),
        flat_train,
        flat_test,
        {},
    )
    results = []
    for model_name, (model, fit_X, test_X, patches) in models.items():
        with patched(patches):
            start = time.perf_counter()
            model.fit(fit_X, Y[train])
            seconds = time.perf_counter() - start
        row = {"set": name, "n": n, "seed": seed, "model": model_name, "fit_s": seconds}
        row.update(multilabel_scores(Y[test], multilabel_positive_proba(model, test_X)))
        results.append(row)
    return results


def section(rows, *, command, minutes, seeds, sizes, n_jobs):
    lines = [
        *section_start(
            SECTION,
            "Small multilabel cohorts: expert weights per label",
            command,
            f"{minutes:.1f} min",
        ),
        f"- protocol: per set and n, n rows drawn at random once; seeds {list(seeds)}, a "
        "random 70/30 train/test split per seed. `I2M2`: `I2M2Classifier(random_state=seed)`"
        " (below 2,000 samples: 5 cross-fitted folds, expert weights fitted on the "
        "pooled held-out rows, one per expert and label); `I2M2, one weight per expert`: the "
        "same fit with one weight per expert shared by the labels (the calibration before "
        "per-label weights); `I2M2, small-cohort defaults below 1,000 samples`: the same with "
        "the multilabel small-cohort size (2,000) patched to the classes' 1,000, fitted from "
        "1,000 training rows; `I2M2, patience 1 (the classes')`: L-BFGS stages stopped after 1 "
        "epoch without improvement instead of 3; "
        "`I2M2 intra`, `I2M2 inter`: `dependencies` intra / inter; "
        "logistic regression on the standardised concatenated views and gradient boosting "
        "(defaults) on the concatenated views, one model per label. Mean ± std over seeds; "
        "differences ± the standard error of the per-seed differences. Fit times are wall "
        f"seconds in one of {n_jobs} processes, after a small warm-up fit in each.",
        "",
    ]
    for name in SETS:
        for n in sizes:
            sel = [r for r in rows if r["set"] == name and r["n"] == n]
            best_part = max(
                ("I2M2 intra", "I2M2 inter"),
                key=lambda m: np.mean([r["subset_accuracy"] for r in sel if r["model"] == m]),
            )
            lines += [
                f"### {name}, n={n} ({round(0.7 * n)} training rows)",
                "",
                *multilabel_table(
                    sel, [m for m in MODELS if any(r["model"] == m for r in sel)], time_digits=2
                ),
                "",
                "- per-label weights minus one weight per expert: "
                + _difference(sel, SHARED_WEIGHTS_MODEL),
                f"- I2M2 minus the better of its intra and inter ({best_part}): "
                + _difference(sel, best_part),
                "- I2M2 minus patience 1: " + _difference(sel, PATIENCE_1),
                *(
                    [
                        "- I2M2 minus the small-cohort defaults below 1,000 samples: "
                        + _difference(sel, SMALL_COHORT_1000)
                    ]
                    if any(r["model"] == SMALL_COHORT_1000 for r in sel)
                    else []
                ),
                "",
            ]
    lines += [f"<!-- {SECTION}:end -->", ""]
    return "\n".join(lines)


def _difference(rows, reference):
    """``I2M2`` minus ``reference``: subset accuracy (points) and log loss, ± standard errors."""
    by_seed = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[r["model"]] = r
    parts = []
    for metric, scale, unit in (("subset_accuracy", 100, " pt"), ("log_loss", 1, "")):
        diffs = np.array(
            [scale * (seed["I2M2"][metric] - seed[reference][metric]) for seed in by_seed.values()]
        )
        error = diffs.std(ddof=1) / np.sqrt(len(diffs)) if len(diffs) > 1 else 0.0
        digits = 1 if scale == 100 else 3
        parts.append(
            f"{metric.replace('_', ' ')} {diffs.mean():+.{digits}f} ± {error:.{digits}f}{unit}"
        )
    return "; ".join(parts) + "."


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="number of seeds (default 10)")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[300, 600, 1400, 2000], help="rows drawn per set"
    )
    parser.add_argument("--n-jobs", type=int, default=2, help="processes (default 2)")
    parser.add_argument(
        "--output", default=str(RESULTS), help="file to write the section to; - prints it only"
    )
    args = parser.parse_args(argv)
    seeds = range(args.seeds)
    start = time.perf_counter()
    tasks = [(name, n, seed) for name in SETS for n in args.sizes for seed in seeds]
    # By reference to the importable module, not to __main__.
    from benchmarks import multilabel_small

    rows = run_tasks(
        multilabel_small.run_task,
        tasks,
        args.n_jobs,
        lambda r: (
            f"{r['set']:15s} n={r['n']:<5d} seed {r['seed']:<3d} {r['model']:32s} "
            f"subset {r['subset_accuracy']:.3f}"
        ),
    )
    text = section(
        rows,
        command=script_command(SECTION, argv),
        minutes=(time.perf_counter() - start) / 60,
        seeds=seeds,
        sizes=args.sizes,
        n_jobs=args.n_jobs,
    )
    if args.output != "-":
        write_results(text, args.output, name=SECTION)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
