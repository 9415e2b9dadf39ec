"""Regression: I2M2Regressor against ridge regression and gradient boosting.

Run from the repository root::

    python -m benchmarks.regression              # all sets, 5 seeds
    python -m benchmarks.regression --quick      # 2 seeds, small sets, few epochs

and the section between ``<!-- regression:start -->`` and
``<!-- regression:end -->`` of ``benchmarks/RESULTS.md`` is rewritten
(``--output -`` only prints it).

Protocol (per data set and seed ``s``): ``load_diabetes`` (442 patients) is
split into two views, demographics and examination (age, sex, BMI, blood
pressure) and the six blood serum measurements (s1-s6); synthetic sets are
drawn afresh with ``make_multimodal_regression(n, random_state=s)`` in the
intra, inter and mixed regimes. The rows are split 70/30 into train and
test (``train_test_split(test_size=0.3, random_state=s)``); every model is
fitted on the training rows with ``random_state=s`` where it has one and
scored on the test rows (R², RMSE, and for I2M2 the mean Gaussian negative
log-likelihood of its predictive distribution).

Models:

- ``I2M2``, ``I2M2 intra``, ``I2M2 inter``: ``I2M2Regressor(random_state=s)``
  with its defaults (``dependencies="both"``, ``"intra"``, ``"inter"``);
- ``Ridge concat``: ``StandardScaler`` + ``Ridge()`` (alpha=1) on the views
  concatenated;
- ``HGB concat``: ``HistGradientBoostingRegressor(random_state=s)`` on the
  concatenation.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import numpy as np

from benchmarks.common import (
    RESULTS,
    flatten,
    run_tasks,
    script_command,
    section_start,
    summarize_seeds,
    write_results,
)

SECTION = "regression"
TEST_SIZE = 0.3


@dataclass(frozen=True)
class RegressionSet:
    title: str
    description: str
    load: object  # seed -> (X, y)


def _diabetes(seed):
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    X = data.data
    return {"demographics": X[:, :4], "serum": X[:, 4:]}, data.target


def _synthetic(n, intra, inter):
    def load(seed):
        from sk_i2m2.datasets import make_multimodal_regression

        return make_multimodal_regression(
            n, intra_strength=intra, inter_strength=inter, random_state=seed
        )

    return load


def _sets(n_synthetic):
    sets = {
        "diabetes": RegressionSet(
            "diabetes",
            "load_diabetes(): demographics (age, sex, bmi, bp) and serum (s1-s6) views; "
            "442 patients",
            _diabetes,
        )
    }
    for name, intra, inter in [("intra", 1.0, 0.0), ("inter", 0.0, 2.0), ("mixed", 0.7, 1.5)]:
        sets[f"synthetic {name}"] = RegressionSet(
            f"synthetic {name} n={n_synthetic}",
            f"make_multimodal_regression({n_synthetic}, 2 modalities x 10 features, "
            f"intra_strength={intra}, inter_strength={inter}), drawn per seed",
            _synthetic(n_synthetic, intra, inter),
        )
    return sets


MODELS = ["I2M2", "I2M2 intra", "I2M2 inter", "Ridge concat", "HGB concat"]


def fit_and_score(model, X_train, y_train, X_test, y_test, seed, i2m2_params):
    """Fit one model; return its test metrics and fit time."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score, root_mean_squared_error
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from sk_i2m2 import I2M2Regressor

    nll = math.nan
    start = time.perf_counter()
    if model.startswith("I2M2"):
        dependencies = {"I2M2": "both", "I2M2 intra": "intra", "I2M2 inter": "inter"}[model]
        reg = I2M2Regressor(dependencies=dependencies, random_state=seed, **i2m2_params)
        reg.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        pred, std = reg.predict(X_test, return_std=True)
        nll = float(np.mean(0.5 * np.log(2 * np.pi * std**2) + (y_test - pred) ** 2 / (2 * std**2)))
    else:
        if model == "Ridge concat":
            reg = make_pipeline(StandardScaler(), Ridge())
        else:
            reg = HistGradientBoostingRegressor(random_state=seed)
        reg.fit(flatten(X_train, np.float64), y_train)
        seconds = time.perf_counter() - start
        pred = reg.predict(flatten(X_test, np.float64))
    return {
        "r2": r2_score(y_test, pred),
        "rmse": root_mean_squared_error(y_test, pred),
        "nll": nll,
        "fit_seconds": seconds,
    }


def run_task(dataset, seed, sets, models, i2m2_params):
    """All models on one data set and seed; a list of result rows."""
    import torch
    from sklearn.model_selection import train_test_split

    torch.set_num_threads(1)
    X, y = sets[dataset].load(seed)
    train, test = train_test_split(np.arange(len(y)), test_size=TEST_SIZE, random_state=seed)
    X_train = {m: np.asarray(x)[train] for m, x in X.items()}
    X_test = {m: np.asarray(x)[test] for m, x in X.items()}
    rows = []
    for model in models:
        scores = fit_and_score(model, X_train, y[train], X_test, y[test], seed, i2m2_params)
        rows.append({"dataset": dataset, "model": model, "seed": seed, **scores})
    return rows


def results_section(summary, sets, command, seeds, elapsed, i2m2_params):
    """The Markdown section of RESULTS.md."""
    params = ", ".join(f"{k}={v!r}" for k, v in i2m2_params.items())
    lines = [
        *section_start(
            SECTION,
            "Regression: I2M2Regressor against ridge regression and gradient boosting",
            command,
            f"{elapsed / 60:.1f} min",
        ),
        f"- protocol: per seed ({', '.join(map(str, seeds))}): a 70/30 train/test split "
        "(`random_state=seed`; synthetic sets drawn with `random_state=seed`). `I2M2`, "
        "`I2M2 intra`, `I2M2 inter`: `I2M2Regressor(random_state=seed"
        + (f", {params}" if params else "")
        + ")` with `dependencies` both / intra / inter; `Ridge concat`: `StandardScaler` + "
        "`Ridge()` on the concatenated views; `HGB concat`: "
        "`HistGradientBoostingRegressor(random_state=seed)` on the concatenation. Test "
        "metrics, mean ± std over seeds; NLL is the mean Gaussian negative log-likelihood "
        "of I2M2's predictive distribution (`predict(X, return_std=True)`), in the units "
        "of y. Fit time is the mean wall time of one fit (1 torch thread).",
        "",
        "Data sets:",
        "",
        *[f"- {s.description}" for s in sets.values()],
        "",
        "| data set | model | R² | RMSE | NLL | fit time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for (dataset, model), row in summary.iterrows():
        nll = "" if math.isnan(row["nll_mean"]) else f"{row['nll_mean']:.3f} ± {row['nll_std']:.3f}"
        lines.append(
            f"| {sets[dataset].title} | {model} | {row['r2_mean']:.3f} ± {row['r2_std']:.3f} | "
            f"{row['rmse_mean']:.3f} ± {row['rmse_std']:.3f} | {nll} | "
            f"{row['fit_seconds_mean']:.1f} |"
        )
    lines.append(f"<!-- {SECTION}:end -->")
    return "\n".join(lines) + "\n"


def summarize(results):
    """Mean and standard deviation (ddof=1) over seeds of each metric, per data set and model."""
    order = {name: i for i, name in enumerate(dict.fromkeys(results["dataset"]))}
    summary = summarize_seeds(results, ["r2", "rmse", "nll", "fit_seconds"], ddof=1)
    model_order = {m: i for i, m in enumerate(MODELS)}
    keys = sorted(summary.index, key=lambda k: (order[k[0]], model_order[k[1]]))
    return summary.loc[keys]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 seeds, synthetic sets of 300 rows, max_epochs=10: a check that it runs",
    )
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5)")
    parser.add_argument("--n-synthetic", type=int, default=None, help="rows of the synthetic sets")
    parser.add_argument("--datasets", nargs="+", default=None, metavar="NAME")
    parser.add_argument("--models", nargs="+", default=None, choices=MODELS, metavar="MODEL")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel processes")
    parser.add_argument(
        "--output",
        default=str(RESULTS),
        help="RESULTS.md to update ('-' prints only)",
    )
    args = parser.parse_args(argv)

    import pandas as pd

    seeds = args.seeds if args.seeds is not None else (2 if args.quick else 5)
    n_synthetic = args.n_synthetic or (300 if args.quick else 2000)
    sets = _sets(n_synthetic)
    names = args.datasets or list(sets)
    unknown = [n for n in names if n not in sets]
    if unknown:
        parser.error(f"unknown data set {unknown[0]!r}; choose from {list(sets)}")
    models = args.models or MODELS
    i2m2_params = {"max_epochs": 10} if args.quick else {}

    # By reference to the importable module, not to __main__.
    from benchmarks import regression

    start = time.perf_counter()
    rows = run_tasks(
        regression.run_task,
        [(n, s, sets, models, i2m2_params) for n in names for s in range(seeds)],
        args.n_jobs,
        lambda r: (
            f"{r['dataset']:<18} {r['model']:<13} seed {r['seed']}: R² {r['r2']:.3f} "
            f"RMSE {r['rmse']:.3f} ({r['fit_seconds']:.1f}s)"
        ),
    )
    elapsed = time.perf_counter() - start
    summary = summarize(pd.DataFrame(rows))
    pd.set_option("display.width", 200)
    print(summary.round(3).to_string())
    command = script_command("regression", argv)
    section = results_section(summary, sets, command, list(range(seeds)), elapsed, i2m2_params)
    if args.output == "-":
        print(section)
    else:
        write_results(section, args.output, name=SECTION)
        print(f"Wrote {args.output} in {elapsed / 60:.1f} min.")
    return summary


if __name__ == "__main__":
    main()
