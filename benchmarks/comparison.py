"""Accuracy benchmark: single-modality experts, intra, inter and I2M2 on offline data.

Run by ``python -m benchmarks.compare`` (and ``sk-i2m2 benchmark`` in a source checkout).
Every data set ships with the package or is generated from a seed, so the
benchmark runs without network access and repeats exactly on the same machine.
"""

from __future__ import annotations

import functools
import hashlib
import time
from dataclasses import dataclass

import numpy as np

from benchmarks.common import (
    classification_scores,
    hgb_concat,
    logistic_concat,
    logistic_product,
    machine_description,
    mfeat_views,
    summarize_seeds,
    summary_cell,
    synthetic_classification,
    utc_now,
)

__all__ = [
    "DATASETS",
    "QUICK",
    "run_benchmark",
    "model_names",
    "summarize",
    "check_claims",
    "check_calibration",
    "results_section",
]

START_MARKER = "<!-- compare:start -->"
END_MARKER = "<!-- compare:end -->"


@dataclass(frozen=True)
class Dataset:
    """A benchmark data set.

    Parameters
    ----------
    title : str
        Name shown in tables and plots.
    load : callable
        ``load() -> (X, y)``, deterministic.
    expect : {"inter", "intra", "both"}
        The claim checked on it: ``"inter"`` I2M2 ≈ inter ≫ intra,
        ``"intra"`` I2M2 ≈ intra ≥ inter, ``"both"`` I2M2 ≥ max(intra,
        inter) within one standard deviation.
    description : str
        One line for RESULTS.md.
    """

    title: str
    load: object
    expect: str
    description: str


def _kspace():
    from sk_i2m2.datasets import load_kspace_digits

    return load_kspace_digits("mfeat")


#: Benchmark data sets by name.
DATASETS = {
    "mfeat-fou-zer": Dataset(
        "mfeat fou+zer",
        functools.partial(mfeat_views, ("fou", "zer")),
        "both",
        "UCI Multiple Features digits, Fourier (76) + Zernike (47) views, 2000 x 10 classes",
    ),
    "mfeat-mor-zer": Dataset(
        "mfeat mor+zer",
        functools.partial(mfeat_views, ("mor", "zer")),
        "both",
        "UCI Multiple Features digits, morphological (6) + Zernike (47) views",
    ),
    "mfeat-all": Dataset(
        "mfeat all six",
        functools.partial(mfeat_views, ("fou", "fac", "kar", "pix", "zer", "mor")),
        "both",
        "UCI Multiple Features digits, all six views as six modalities",
    ),
    "synthetic-inter": Dataset(
        "synthetic inter",
        functools.partial(synthetic_classification, 1000, 0.0, 2.0, 0),
        "inter",
        "make_multimodal_classification(1000, 2 modalities x 10 features, "
        "intra_strength=0, inter_strength=2): label = XOR of latents across modalities",
    ),
    "synthetic-intra": Dataset(
        "synthetic intra",
        functools.partial(synthetic_classification, 1000, 0.7, 0.0, 0),
        "intra",
        "make_multimodal_classification(..., intra_strength=0.7, inter_strength=0): "
        "modalities independent given the label",
    ),
    "synthetic-mixed": Dataset(
        "synthetic mixed",
        functools.partial(synthetic_classification, 1000, 0.5, 1.5, 0),
        "both",
        "make_multimodal_classification(..., intra_strength=0.5, inter_strength=1.5)",
    ),
    "kspace": Dataset(
        "k-space mag+phase",
        _kspace,
        "both",
        "load_kspace_digits(): log-magnitude and phase of the 2-D FFT of the 16 x 15 "
        "mfeat digit images, two (n, 1, 16, 15) image modalities",
    ),
}

#: Settings of ``--quick``: fewer data sets, seeds and epochs (a few minutes on 2 CPU cores).
QUICK = {
    "datasets": ["mfeat-fou-zer", "synthetic-inter", "synthetic-intra", "synthetic-mixed"],
    "seeds": 2,
    "max_epochs": 30,
}

#: Models trained on every data set besides one expert per modality:
#: label -> I2M2Classifier parameters.
MODELS = {
    "intra": {"dependencies": "intra"},
    "inter (concat)": {"dependencies": "inter", "fusion": "concat"},
    "inter (lrtf)": {"dependencies": "inter", "fusion": "lrtf"},
    "I2M2": {"dependencies": "both"},
}
EXPERT_PREFIX = "expert: "

#: scikit-learn models a reviewer compares against, on the same splits:
#: label -> ``fit(X_train, y_train, seed) -> predict_proba`` (see ``benchmarks.common``).
#: The concatenations are of float64 columns.
BASELINES = {
    "logistic (concat)": functools.partial(logistic_concat, dtype=np.float64),
    "logistic (product)": logistic_product,
    "HGB (concat)": functools.partial(hgb_concat, dtype=np.float64),
}


@functools.cache
def _load(name):
    return DATASETS[name].load()


def _run_one(name, model, seed, max_epochs, test_size, threads):
    """Fit one model on one seed's split of one data set; return its scores."""
    import torch
    from sklearn.model_selection import train_test_split

    from sk_i2m2 import I2M2Classifier

    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        X, y = _load(name)
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=test_size, stratify=y, random_state=seed
        )
        if model in BASELINES:
            start = time.perf_counter()
            predict_proba = BASELINES[model](X_train, y_train, seed)
            seconds = time.perf_counter() - start
            return {
                "dataset": name,
                "model": model,
                "seed": seed,
                **classification_scores(predict_proba(X_test), np.unique(y_train), y_test),
                "fit_seconds": seconds,
            }
        if model.startswith(EXPERT_PREFIX):
            modality = model[len(EXPERT_PREFIX) :]
            X_train, X_test = {modality: X_train[modality]}, {modality: X_test[modality]}
            params = {}
        else:
            params = dict(MODELS[model])
        if max_epochs is not None:
            params["max_epochs"] = max_epochs
        start = time.perf_counter()
        clf = I2M2Classifier(random_state=seed, **params).fit(X_train, y_train)
        seconds = time.perf_counter() - start
        return {
            "dataset": name,
            "model": model,
            "seed": seed,
            **classification_scores(clf.predict_proba(X_test), clf.classes_, y_test),
            "fit_seconds": seconds,
        }
    finally:
        torch.set_num_threads(previous_threads)


def _fit_key(name, model, seed):
    """Identifies a fit: an expert by its data's content, other models by name."""
    if not model.startswith(EXPERT_PREFIX):
        return name, model, seed
    X, y = _load(name)
    x = np.ascontiguousarray(X[model[len(EXPERT_PREFIX) :]])
    digest = hashlib.sha1(str(x.shape).encode() + x.tobytes() + y.tobytes()).hexdigest()
    return digest, model, seed


def model_names(name):
    """Models benchmarked on data set ``name``: one expert per modality, then MODELS."""
    X, _ = _load(name)
    return [EXPERT_PREFIX + m for m in X] + list(MODELS) + list(BASELINES)


def run_benchmark(
    datasets=None, seeds=5, max_epochs=None, *, test_size=0.3, n_jobs=1, threads=1, verbose=0
):
    """Train every model on every data set and seed; return per-fit scores.

    Each seed draws a stratified train/test split and seeds the model
    (``random_state=seed``); every model is an ``I2M2Classifier`` with its
    default hyperparameters: one per modality on that modality alone, then
    ``intra``, ``inter`` with concat and low-rank tensor fusion, and I2M2.

    Parameters
    ----------
    datasets : list of str or None, default=None
        Keys of :data:`DATASETS`; ``None`` runs them all.
    seeds : int or list of int, default=5
        Seeds (an int ``n`` means ``0 .. n - 1``).
    max_epochs : int or None, default=None
        Overrides ``I2M2Classifier(max_epochs=...)``; ``None`` keeps the
        default.
    test_size : float, default=0.3
        Share of each data set held out for testing.
    n_jobs : int, default=1
        Fits run in parallel processes (joblib).
    threads : int or None, default=1
        Torch threads per fit. The default experts are small, and one
        thread per fit avoids threads spinning against each other on a busy
        machine; ``None`` keeps torch's setting.
    verbose : int, default=0
        1 prints one line per fit.

    Returns
    -------
    results : pandas.DataFrame
        One row per (dataset, model, seed) with ``accuracy``, ``auroc``
        (macro one-vs-rest), ``ece`` and ``fit_seconds``.
    """
    import pandas as pd
    from joblib import Parallel, delayed

    names = list(DATASETS) if datasets is None else list(datasets)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise ValueError(f"Unknown data set {unknown[0]!r}; choose from {list(DATASETS)}.")
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    tasks = [
        (name, model, seed) for name in names for model in model_names(name) for seed in seed_list
    ]
    # A single-modality expert depends only on its modality, y and the seed: fit
    # it once when several data sets share that modality (the mfeat views).
    first_task = {}
    for task in tasks:
        first_task.setdefault(_fit_key(*task), task)

    def report(row):
        if verbose:
            print(
                f"{row['dataset']:<16} {row['model']:<18} seed {row['seed']}: accuracy "
                f"{row['accuracy']:.3f} ({row['fit_seconds']:.1f}s)",
                flush=True,
            )
        return row

    unique = list(first_task.values())
    if n_jobs == 1:
        fitted = [report(_run_one(*task, max_epochs, test_size, threads)) for task in unique]
    else:
        jobs = Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(_run_one)(*task, max_epochs, test_size, threads) for task in unique
        )
        fitted = [report(row) for row in jobs]
    by_key = {_fit_key(*task): row for task, row in zip(unique, fitted)}
    rows = [{**by_key[_fit_key(*task)], "dataset": task[0], "model": task[1]} for task in tasks]
    return pd.DataFrame(rows)


def summarize(results):
    """Mean and standard deviation over seeds of each (dataset, model).

    Parameters
    ----------
    results : pandas.DataFrame
        Output of :func:`run_benchmark`.

    Returns
    -------
    summary : pandas.DataFrame
        Indexed by (dataset, model) in benchmark order, with columns
        ``<metric>_mean`` and ``<metric>_std`` (population std over seeds,
        0 for one seed) for accuracy, auroc, log_loss, brier, ece and fit_seconds.
    """
    return summarize_seeds(
        results, ["accuracy", "auroc", "log_loss", "brier", "ece", "fit_seconds"]
    )


def check_claims(summary):
    """Check each data set's expected ordering of I2M2, intra and inter.

    Comparisons use test accuracy. "A ≥ B within one std" means
    ``mean(A) >= mean(B) - max(std(A), std(B))``; "A ≫ B" means A is at
    least 0.1 higher. "inter" is the better of the two fusions.

    Parameters
    ----------
    summary : pandas.DataFrame
        Output of :func:`summarize`.

    Returns
    -------
    checks : list of dict
        Per data set: ``dataset``, ``claim`` (text), ``holds`` (bool) and
        ``evidence`` (the accuracies compared).
    """
    checks = []
    for name in summary.index.get_level_values(0).unique():
        acc = summary.loc[name, "accuracy_mean"]
        std = summary.loc[name, "accuracy_std"]
        inter_model = max(["inter (concat)", "inter (lrtf)"], key=lambda m: acc[m])

        def geq(a, b, acc=acc, std=std):
            return bool(acc[a] >= acc[b] - max(std[a], std[b]))

        expect = DATASETS[name].expect
        if expect == "inter":
            claim = "I2M2 ≈ inter ≫ intra"
            holds = geq("I2M2", inter_model) and acc[inter_model] >= acc["intra"] + 0.1
        elif expect == "intra":
            claim = "I2M2 ≈ intra ≥ inter"
            holds = geq("I2M2", "intra") and geq("intra", inter_model)
        else:
            best = max(["intra", inter_model], key=lambda m: acc[m])
            claim = "I2M2 ≥ max(intra, inter) within one std"
            holds = geq("I2M2", best)
        evidence = ", ".join(
            f"{m} {acc[m]:.3f} ± {std[m]:.3f}" for m in ["I2M2", "intra", inter_model]
        )
        checks.append({"dataset": name, "claim": claim, "holds": holds, "evidence": evidence})
    return checks


def check_calibration(summary, ece_margin=0.005):
    """Check, per data set, that I2M2 is as calibrated as its parts.

    Targets: I2M2's ECE ≤ min(intra, inter) ECE + ``ece_margin`` and its
    log loss ≤ min(intra, inter) log loss, where inter is the concat fusion
    (the one I2M2 uses).

    Returns
    -------
    checks : list of dict
        Per data set: ``dataset``, the I2M2 and best-part ECE and log loss,
        and ``ece_holds``/``log_loss_holds``.
    """
    checks = []
    for name in summary.index.get_level_values(0).unique():
        rows = summary.loc[name]
        parts = ["intra", "inter (concat)"]
        ece, best_ece = rows.loc["I2M2", "ece_mean"], rows.loc[parts, "ece_mean"].min()
        nll, best_nll = rows.loc["I2M2", "log_loss_mean"], rows.loc[parts, "log_loss_mean"].min()
        checks.append(
            {
                "dataset": name,
                "ece": ece,
                "best_ece": best_ece,
                "ece_holds": bool(ece <= best_ece + ece_margin),
                "log_loss": nll,
                "best_log_loss": best_nll,
                "log_loss_holds": bool(nll <= best_nll),
            }
        )
    return checks


def results_section(summary, checks, *, command, seeds, max_epochs, plot_name=None, elapsed=None):
    """The RESULTS.md section (between the compare markers) as a string."""
    names = list(summary.index.get_level_values(0).unique())
    epochs = "default" if max_epochs is None else str(max_epochs)
    lines = [
        START_MARKER,
        "## Accuracy: single-modality experts, intra, inter and I2M2",
        "",
        f"- date: {utc_now()}",
        f"- machine: {machine_description()}",
        f"- command: `{command}`" + (f" ({elapsed / 60:.1f} min)" if elapsed else ""),
        f"- protocol: per seed ({', '.join(map(str, seeds))}) a stratified 70/30 "
        "train/test split and `random_state=seed`; every model is an `I2M2Classifier` "
        f"with default hyperparameters (max_epochs: {epochs}). `expert: m` is fitted on "
        "modality m alone, `intra` is the product of per-modality experts, `inter` the "
        "fused expert alone (late fusion `concat` or low-rank tensor fusion `lrtf`), "
        "`I2M2` the product of both (concat fusion). Test metrics, mean ± std over seeds; "
        "AUROC is macro one-vs-rest; ECE is the top-label expected calibration error "
        "(15 bins, lower is better); Brier is the multi-class Brier score. Every "
        "`I2M2Classifier` calibrates its probabilities by default (`calibration="
        '"temperature"`). Baselines on the same splits: `logistic (concat)` is '
        "`LogisticRegression` (default C) on the standardised concatenation of all "
        "modalities, `logistic (product)` the normalised product of one such model per "
        "modality, `HGB (concat)` `HistGradientBoostingClassifier` on the concatenation.",
        "",
        "Data sets:",
        "",
    ]
    lines += [f"- **{DATASETS[n].title}**: {DATASETS[n].description}" for n in names]
    lines += [
        "",
        "### Claims (test accuracy)",
        "",
        '"A ≥ B within one std": mean(A) ≥ mean(B) − max(std(A), std(B)); "≫": at least '
        "0.1 higher; inter is the better of concat and lrtf.",
        "",
        "| data set | claim | holds | I2M2, intra, inter |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {DATASETS[c['dataset']].title} | {c['claim']} | "
        f"{'yes' if c['holds'] else '**no**'} | {c['evidence']} |"
        for c in checks
    ]
    lines += [
        "",
        "### Calibration (test rows)",
        "",
        "Targets: I2M2's ECE ≤ min(intra, inter) ECE + 0.005 and its log loss ≤ "
        "min(intra, inter) log loss (inter: concat fusion, as in I2M2).",
        "",
        "| data set | I2M2 ECE | min(intra, inter) ECE | holds | I2M2 log loss | "
        "min(intra, inter) log loss | holds |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {DATASETS[c['dataset']].title} | {c['ece']:.3f} | {c['best_ece']:.3f} | "
        f"{'yes' if c['ece_holds'] else '**no**'} | {c['log_loss']:.3f} | "
        f"{c['best_log_loss']:.3f} | {'yes' if c['log_loss_holds'] else '**no**'} |"
        for c in check_calibration(summary)
    ]
    lines += [
        "",
        "### Results",
        "",
        "| data set | model | accuracy | macro AUROC | log loss | Brier | ECE | fit time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, model in summary.index:
        key = (name, model)
        label = f"**{model}**" if model == "I2M2" else model
        lines.append(
            f"| {DATASETS[name].title} | {label} | {summary_cell(summary, key, 'accuracy')} | "
            f"{summary_cell(summary, key, 'auroc')} | {summary_cell(summary, key, 'log_loss')} | "
            f"{summary_cell(summary, key, 'brier')} | {summary_cell(summary, key, 'ece')} | "
            f"{summary.loc[key, 'fit_seconds_mean']:.2f} |"
        )
    if plot_name:
        lines += ["", f"![Test accuracy per data set and model]({plot_name})"]
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"
