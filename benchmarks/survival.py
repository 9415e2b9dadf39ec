"""Survival: I2M2SurvivalAnalysis against Cox models and a random survival forest.

Run from the repository root (needs scikit-survival, ``pip install -e ".[survival]"``)::

    python -m benchmarks.survival              # all sets, 10 seeds
    python -m benchmarks.survival --quick      # 2 seeds

and the section between ``<!-- survival:start -->`` and ``<!-- survival:end -->``
of ``benchmarks/RESULTS.md`` is rewritten (``--output -`` only prints it).

Protocol (per data set and seed ``s``): a 70/30 train/test split stratified
on the event (``train_test_split(stratify=event, random_state=s)``); every
model is fitted on the training rows (``random_state=s`` where it has one)
and scored on the test rows: Harrell's C, Uno's C (IPCW, truncated at the
last evaluation time), the integrated Brier score and the mean
time-dependent AUC (``sksurv.metrics``) at 8 times, the 10th to 80th
percentiles of the test rows' event times (kept inside the training rows'
follow-up). The last three weigh by the censoring distribution of the
training rows, so test rows past the training rows' last time (rare) are
left out of them.

Models:

- ``I2M2``, ``I2M2 intra``, ``I2M2 inter``: ``I2M2SurvivalAnalysis`` with its
  defaults (``dependencies="both"``, then ``"intra"`` and ``"inter"`` with
  ``warm_start=True``: the stage-1 experts of the first fit are kept);
- ``CoxPH concat``: ``StandardScaler`` + ``CoxPHSurvivalAnalysis(alpha=1)``
  (a small ridge penalty) on the views concatenated;
- ``Coxnet concat``: ``StandardScaler`` + ``CoxnetSurvivalAnalysis(l1_ratio=0.9)``
  with ``alpha`` chosen among 10 of its path's values by 5-fold Harrell's C
  on the training rows;
- ``Cox per view``: one ``CoxPHSurvivalAnalysis(alpha=1)`` per standardised
  view, risk scores summed, Breslow baseline on the sum;
- ``RSF concat``: ``RandomSurvivalForest(n_estimators=100,
  min_samples_leaf=15)`` on the concatenation.

Side rows measure the batch size: ``I2M2 batch 32`` on the small real
cohorts (the default there is the full batch), ``I2M2 full batch`` on the
larger sets (where the default is ``n_train // 16`` rows).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import FitFailedWarning

from benchmarks.common import (
    RESULTS,
    flatten,
    mean_std,
    script_command,
    section_start,
    write_results,
)

SECTION = "survival"
N_TIMES = 8
BASELINES = ["CoxPH concat", "Coxnet concat", "Cox per view", "RSF concat"]
I2M2_MODELS = ["I2M2", "I2M2 intra", "I2M2 inter"]
METRICS = {"harrell": "Harrell's C", "uno": "Uno's C", "ibs": "IBS", "auc": "mean AUC(t)"}


def _frame_views(X, views):
    from sksurv.column import encode_categorical

    X = encode_categorical(X).astype(float)
    out = {}
    for name, prefixes in views.items():
        columns = [c for c in X.columns if c.split("=")[0] in prefixes]
        out[name] = X[columns].to_numpy(np.float32)
    return out


def _breast_cancer():
    from sksurv.column import encode_categorical
    from sksurv.datasets import load_breast_cancer

    X, y = load_breast_cancer()
    X = encode_categorical(X).astype(float)
    genes = [c for c in X.columns if c.startswith("X")]
    clinical = [c for c in X.columns if c not in genes]
    views = {"genes": X[genes].to_numpy(np.float32), "clinical": X[clinical].to_numpy(np.float32)}
    return views, y


def _gbsg2():
    from sksurv.datasets import load_gbsg2

    X, y = load_gbsg2()
    views = {
        "patient": ["age", "menostat", "horTh"],
        "tumour": ["tsize", "tgrade", "pnodes", "progrec", "estrec"],
    }
    return _frame_views(X, views), y


def _veterans():
    from sksurv.datasets import load_veterans_lung_cancer

    X, y = load_veterans_lung_cancer()
    views = {
        "patient": ["Age_in_years", "Karnofsky_score", "Months_from_Diagnosis", "Prior_therapy"],
        "tumour_treatment": ["Celltype", "Treatment"],
    }
    return _frame_views(X, views), y


def _aids():
    from sksurv.datasets import load_aids

    X, y = load_aids()
    views = {
        "demographics": ["age", "sex", "raceth", "ivdrug", "hemophil"],
        "clinical": ["cd4", "karnof", "priorzdv", "strat2", "tx"],
    }
    return _frame_views(X, views), y


def _digits():
    from sk_i2m2.datasets import make_survival_digits

    X, y = make_survival_digits(random_state=0)
    return dict(X), y


SETS = {
    "breast cancer": (
        _breast_cancer,
        "sksurv load_breast_cancer: 198 patients, 76 gene-expression values vs 6 clinical "
        "columns (age, ER, grade, size), distant metastasis",
    ),
    "GBSG2": (
        _gbsg2,
        "sksurv load_gbsg2: 686 patients, patient (age, menopause, hormone therapy) vs "
        "tumour (size, grade, nodes, receptors), recurrence-free survival",
    ),
    "veterans": (
        _veterans,
        "sksurv load_veterans_lung_cancer: 137 patients, patient (age, Karnofsky, months "
        "from diagnosis, prior therapy) vs cell type and treatment",
    ),
    "AIDS": (
        _aids,
        "sksurv load_aids: 1151 patients (96 AIDS events), demographics vs clinical "
        "(CD4, Karnofsky, prior ZDV, strata, treatment)",
    ),
    "digits (synthetic)": (
        _digits,
        "make_survival_digits(random_state=0): 1797 patients, a 4-column table and an "
        "8 x 8 digit image; log-hazard = s(digit) + z0 + parity(digit) * z1",
    ),
}
REAL = ["breast cancer", "GBSG2", "veterans", "AIDS"]
# Fewer than 1000 training rows: batch_size="auto" is the full batch there.
SMALL = REAL


def _eval_times(y_train, y_test):
    event_field, time_field = y_test.dtype.names
    times = np.quantile(y_test[time_field][y_test[event_field]], np.linspace(0.1, 0.8, N_TIMES))
    low = y_train[time_field].min()
    high = min(y_train[time_field].max(), y_test[time_field].max())
    return np.unique(times[(times > low) & (times < high)])


def _metrics(y_train, y_test, risk, survival_functions, times):
    from sksurv.metrics import (
        concordance_index_censored,
        concordance_index_ipcw,
        cumulative_dynamic_auc,
        integrated_brier_score,
    )

    event_field, time_field = y_test.dtype.names
    probs = np.vstack([fn(times) for fn in survival_functions])
    # The censoring distribution of the IPCW metrics is estimated on the
    # training rows: test rows past their last time are left out of those.
    inside = y_test[time_field] <= y_train[time_field].max()
    y_in, risk_in = y_test[inside], risk[inside]
    return {
        "harrell": concordance_index_censored(y_test[event_field], y_test[time_field], risk)[0],
        "uno": concordance_index_ipcw(y_train, y_in, risk_in, tau=times[-1])[0],
        "ibs": integrated_brier_score(y_train, y_in, probs[inside], times),
        "auc": cumulative_dynamic_auc(y_train, y_in, risk_in, times)[1],
    }


def _coxnet(X_train, y_train, seed):
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    path = make_pipeline(
        StandardScaler(), CoxnetSurvivalAnalysis(l1_ratio=0.9, alpha_min_ratio=0.01)
    ).fit(X_train, y_train)
    alphas = path[-1].alphas_
    candidates = alphas[np.linspace(0, len(alphas) - 1, 10).astype(int)]
    event = y_train[y_train.dtype.names[0]]
    search = GridSearchCV(
        make_pipeline(
            StandardScaler(), CoxnetSurvivalAnalysis(l1_ratio=0.9, fit_baseline_model=True)
        ),
        {"coxnetsurvivalanalysis__alphas": [[a] for a in candidates]},
        cv=list(StratifiedKFold(5, shuffle=True, random_state=seed).split(X_train, event)),
        error_score=0.5,
    )
    return search.fit(X_train, y_train).best_estimator_


def _per_view_cox(views_train, y_train, views_test):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.linear_model.coxph import BreslowEstimator

    event_field, time_field = y_train.dtype.names
    models = {
        m: make_pipeline(StandardScaler(), CoxPHSurvivalAnalysis(alpha=1.0)).fit(
            v.reshape(len(v), -1), y_train
        )
        for m, v in views_train.items()
    }

    def risk(views):
        return sum(models[m].predict(v.reshape(len(v), -1)) for m, v in views.items())

    baseline = BreslowEstimator().fit(risk(views_train), y_train[event_field], y_train[time_field])
    test_risk = risk(views_test)
    return test_risk, baseline.get_survival_function(test_risk)


def run_seed(name, seed, batch_effect):
    """Every model's test metrics (and fit seconds) on one split of one data set."""
    import torch
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sksurv.ensemble import RandomSurvivalForest
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from sk_i2m2 import I2M2SurvivalAnalysis

    torch.set_num_threads(1)  # small models on a shared machine: threads contend
    views, y = SETS[name][0]()
    event = y[y.dtype.names[0]]
    train, test = train_test_split(
        np.arange(len(y)), test_size=0.3, stratify=event, random_state=seed
    )
    v_train = {m: v[train] for m, v in views.items()}
    v_test = {m: v[test] for m, v in views.items()}
    y_train, y_test = y[train], y[test]
    times = _eval_times(y_train, y_test)
    flat_train, flat_test = flatten(v_train), flatten(v_test)
    rows = []

    def record(model, start, risk, functions):
        seconds = time.perf_counter() - start
        scores = _metrics(y_train, y_test, risk, functions, times)
        rows.append({"data set": name, "seed": seed, "model": model, "fit_s": seconds, **scores})

    i2m2 = I2M2SurvivalAnalysis(random_state=seed, warm_start=True)
    for model, dependencies in zip(I2M2_MODELS, ["both", "intra", "inter"]):
        start = time.perf_counter()
        i2m2.set_params(dependencies=dependencies).fit(v_train, y_train)
        record(model, start, i2m2.predict(v_test), i2m2.predict_survival_function(v_test))
    # The other side of batch_size="auto": mini-batches on small cohorts, else full batch.
    label, batch_size = ("I2M2 batch 32", 32) if batch_effect else ("I2M2 full batch", len(train))
    start = time.perf_counter()
    other = I2M2SurvivalAnalysis(random_state=seed, batch_size=batch_size).fit(v_train, y_train)
    record(label, start, other.predict(v_test), other.predict_survival_function(v_test))

    start = time.perf_counter()
    cox = make_pipeline(StandardScaler(), CoxPHSurvivalAnalysis(alpha=1.0)).fit(flat_train, y_train)
    record("CoxPH concat", start, cox.predict(flat_test), cox.predict_survival_function(flat_test))
    start = time.perf_counter()
    net = _coxnet(flat_train, y_train, seed)
    record("Coxnet concat", start, net.predict(flat_test), net.predict_survival_function(flat_test))
    start = time.perf_counter()
    record("Cox per view", start, *_per_view_cox(v_train, y_train, v_test))
    start = time.perf_counter()
    forest = RandomSurvivalForest(
        n_estimators=100, min_samples_leaf=15, n_jobs=1, random_state=seed
    ).fit(flat_train, y_train)
    record(
        "RSF concat", start, forest.predict(flat_test), forest.predict_survival_function(flat_test)
    )
    return rows


def _claims(results):
    lines = [
        "| data set | claim | holds | figures (Harrell's C, mean over seeds) |",
        "|---|---|---|---|",
    ]
    mean = results.groupby(["data set", "model"])["harrell"].mean()
    for name in SETS:
        if name not in mean.index.get_level_values(0):
            continue
        c = mean[name]
        best = max(BASELINES, key=lambda m: c[m])
        if name in REAL:
            claim, holds = "I2M2 ≥ best baseline − 0.01", c["I2M2"] >= c[best] - 0.01
            figures = f"I2M2 {c['I2M2']:.3f}, best baseline {best} {c[best]:.3f}"
        else:
            claim = "I2M2 ≥ every baseline + 0.05"
            holds = c["I2M2"] >= c[best] + 0.05
            figures = f"I2M2 {c['I2M2']:.3f}, best baseline {best} {c[best]:.3f}"
        lines.append(f"| {name} | {claim} | {'yes' if holds else '**no**'} | {figures} |")
        top = max(c["I2M2 intra"], c["I2M2 inter"])
        holds = c["I2M2"] >= top - 0.01
        lines.append(
            f"| {name} | I2M2 ≥ max(intra, inter) − 0.01 | {'yes' if holds else '**no**'} | "
            f"I2M2 {c['I2M2']:.3f}, intra {c['I2M2 intra']:.3f}, inter {c['I2M2 inter']:.3f} |"
        )
    return lines


def _tables(results):
    lines = []
    order = I2M2_MODELS + ["I2M2 batch 32", "I2M2 full batch"] + BASELINES
    for name in SETS:
        subset = results[results["data set"] == name]
        if subset.empty:
            continue
        lines += [
            f"#### {name}",
            "",
            "| model | " + " | ".join(METRICS.values()) + " | fit s |",
            "|---|" + "---|" * (len(METRICS) + 1),
        ]
        for model in order:
            rows = subset[subset["model"] == model]
            if rows.empty:
                continue
            cells = [mean_std(rows[key]) for key in METRICS]
            lines.append(f"| {model} | " + " | ".join(cells) + f" | {rows['fit_s'].mean():.2f} |")
        lines.append("")
    return lines


def section(results, seeds, command, minutes):
    lines = [
        *section_start(
            SECTION,
            "Survival: I2M2SurvivalAnalysis against Cox models and a random survival forest",
            command,
            f"{minutes:.1f} min",
        ),
        f"- protocol: per seed ({', '.join(map(str, seeds))}) a 70/30 train/test split "
        "stratified on the event, `random_state=seed`; test metrics, mean ± std over "
        "seeds (higher is better except IBS). See `benchmarks/survival.py` for the models.",
        "",
        "Data sets:",
        "",
        *[f"- **{name}**: {description}" for name, (_, description) in SETS.items()],
        "",
        "### Claims",
        "",
        *_claims(results),
        "",
        "### Results",
        "",
        *_tables(results),
        f"<!-- {SECTION}:end -->",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 10)")
    parser.add_argument("--datasets", nargs="+", default=None, choices=list(SETS), metavar="NAME")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel processes")
    parser.add_argument(
        "--output",
        default=str(RESULTS),
        help="RESULTS.md to update, or - to print",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # Coxnet's smallest candidate penalties may fail to converge; they score 0.5.
    warnings.filterwarnings("ignore", category=FitFailedWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="sklearn")
    from joblib import Parallel, delayed

    seeds = list(range(args.seeds or (2 if args.quick else 10)))
    names = args.datasets or list(SETS)
    start = time.perf_counter()
    jobs = [(name, seed) for name in names for seed in seeds]
    parts = Parallel(n_jobs=args.n_jobs)(
        delayed(run_seed)(name, seed, name in SMALL) for name, seed in jobs
    )
    results = pd.DataFrame([row for part in parts for row in part])
    minutes = (time.perf_counter() - start) / 60
    text = section(results, seeds, script_command("survival", argv), minutes)
    if args.output == "-":
        print(text)
    else:
        write_results(text, args.output, name=SECTION)
        print(text)


if __name__ == "__main__":
    main()
