"""Accuracy benchmark: single-modality experts, intra, inter and I2M2 on offline data.

Used by ``benchmarks/compare.py`` (and ``sk-i2m2 benchmark`` in a source checkout). Every data set
ships with the package or is generated from a seed, so the benchmark runs
without network access and repeats exactly on the same machine.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import os
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DATASETS",
    "QUICK",
    "expected_calibration_error",
    "run_benchmark",
    "summarize",
    "check_claims",
    "write_results",
    "plot_results",
    "main",
    "add_arguments",
    "run_from_args",
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


def _mfeat(views):
    from sk_i2m2.datasets import load_mfeat

    return lambda: load_mfeat(list(views))


def _synthetic(intra_strength, inter_strength):
    from sk_i2m2.datasets import make_multimodal_classification

    return lambda: make_multimodal_classification(
        n_samples=1000,
        n_modalities=2,
        n_features=10,
        intra_strength=intra_strength,
        inter_strength=inter_strength,
        random_state=0,
    )


def _kspace():
    from sk_i2m2.datasets import load_kspace_digits

    return load_kspace_digits("mfeat")


#: Benchmark data sets by name.
DATASETS = {
    "mfeat-fou-zer": Dataset(
        "mfeat fou+zer",
        _mfeat(["fou", "zer"]),
        "both",
        "UCI Multiple Features digits, Fourier (76) + Zernike (47) views, 2000 x 10 classes",
    ),
    "mfeat-mor-zer": Dataset(
        "mfeat mor+zer",
        _mfeat(["mor", "zer"]),
        "both",
        "UCI Multiple Features digits, morphological (6) + Zernike (47) views",
    ),
    "mfeat-all": Dataset(
        "mfeat all six",
        _mfeat(["fou", "fac", "kar", "pix", "zer", "mor"]),
        "both",
        "UCI Multiple Features digits, all six views as six modalities",
    ),
    "synthetic-inter": Dataset(
        "synthetic inter",
        _synthetic(0.0, 2.0),
        "inter",
        "make_multimodal_classification(1000, 2 modalities x 10 features, "
        "intra_strength=0, inter_strength=2): label = XOR of latents across modalities",
    ),
    "synthetic-intra": Dataset(
        "synthetic intra",
        _synthetic(0.7, 0.0),
        "intra",
        "make_multimodal_classification(..., intra_strength=0.7, inter_strength=0): "
        "modalities independent given the label",
    ),
    "synthetic-mixed": Dataset(
        "synthetic mixed",
        _synthetic(0.5, 1.5),
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
#: label -> kind (see :func:`fit_baseline`).
BASELINES = {
    "logistic (concat)": "logistic-concat",
    "logistic (product)": "logistic-product",
    "HGB (concat)": "hgb-concat",
}


def _flatten(X):
    """Every modality as columns of one table (images and sequences flattened)."""
    return np.concatenate(
        [np.asarray(v, dtype=np.float64).reshape(len(v), -1) for v in X.values()], axis=1
    )


def _logistic():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))


def fit_baseline(kind, X_train, y_train, seed):
    """Fit a scikit-learn baseline; return ``predict_proba(X) -> proba`` and its classes.

    ``"logistic-concat"``: ``LogisticRegression`` (default C) on the
    standardised concatenation of all modalities; ``"logistic-product"``:
    one such model per modality, combined as the normalised product of
    their probabilities (softmax of the summed log-probabilities), the
    linear counterpart of the intra product; ``"hgb-concat"``:
    ``HistGradientBoostingClassifier`` on the concatenation.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    if kind == "logistic-product":
        models = {
            m: _logistic().fit(np.asarray(v).reshape(len(v), -1), y_train)
            for m, v in X_train.items()
        }

        def predict_proba(X):
            logs = sum(
                np.log(
                    np.clip(
                        models[m].predict_proba(np.asarray(X[m]).reshape(len(X[m]), -1)),
                        1e-300,
                        None,
                    )
                )
                for m in models
            )
            logs -= logs.max(axis=1, keepdims=True)
            proba = np.exp(logs)
            return proba / proba.sum(axis=1, keepdims=True)

        return predict_proba, next(iter(models.values())).classes_
    if kind == "logistic-concat":
        model = _logistic()
    elif kind == "hgb-concat":
        model = HistGradientBoostingClassifier(random_state=seed)
    else:
        raise ValueError(f"Unknown baseline {kind!r}.")
    model.fit(_flatten(X_train), y_train)
    return (lambda X: model.predict_proba(_flatten(X))), model.classes_


def expected_calibration_error(y_true, proba, n_bins=15):
    """Top-label expected calibration error with equal-width confidence bins.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        Class indices (column numbers of ``proba``).
    proba : ndarray of shape (n_samples, n_classes)
        Predicted class probabilities.
    n_bins : int, default=15
        Number of bins over the confidence range [0, 1].

    Returns
    -------
    ece : float
        ``sum_b |B_b| / n * |accuracy(B_b) - confidence(B_b)|``.
    """
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(y_true)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        in_bin = bins == b
        ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def _scores(proba, classes, y_test):
    from sklearn.metrics import log_loss, roc_auc_score

    y_index = np.searchsorted(classes, y_test)
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
        "brier": float(np.mean(np.sum((proba - np.eye(proba.shape[1])[y_index]) ** 2, axis=1))),
        "ece": expected_calibration_error(y_index, proba),
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
            predict_proba, classes = fit_baseline(BASELINES[model], X_train, y_train, seed)
            seconds = time.perf_counter() - start
            return {
                "dataset": name,
                "model": model,
                "seed": seed,
                **_scores(predict_proba(X_test), classes, y_test),
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
            **_scores(clf.predict_proba(X_test), clf.classes_, y_test),
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
    metrics = ["accuracy", "auroc", "log_loss", "brier", "ece", "fit_seconds"]
    grouped = results.groupby(["dataset", "model"], sort=False)[metrics]
    summary = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=0).add_suffix("_std"))
    return summary


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


def machine_description():
    """One line naming the CPU (and GPU, if used), core count and library versions."""
    import sklearn
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            found = re.search(r"model name\s*:\s*(.+)", f.read())
        if found:
            cpu = found.group(1).strip()
    except OSError:
        pass
    parts = [f"{cpu}, {os.cpu_count()} cores", platform.system()]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name()}")
    parts.append(
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"scikit-learn {sklearn.__version__}"
    )
    return "; ".join(parts)


def _fmt(summary, key, metric, digits=3):
    mean, std = summary.loc[key, f"{metric}_mean"], summary.loc[key, f"{metric}_std"]
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def results_section(summary, checks, *, command, seeds, max_epochs, plot_name=None, elapsed=None):
    """The RESULTS.md section (between the compare markers) as a string."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    names = list(summary.index.get_level_values(0).unique())
    epochs = "default" if max_epochs is None else str(max_epochs)
    lines = [
        START_MARKER,
        "## Accuracy: single-modality experts, intra, inter and I2M2",
        "",
        f"- date: {now}",
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
            f"| {DATASETS[name].title} | {label} | {_fmt(summary, key, 'accuracy')} | "
            f"{_fmt(summary, key, 'auroc')} | {_fmt(summary, key, 'log_loss')} | "
            f"{_fmt(summary, key, 'brier')} | {_fmt(summary, key, 'ece')} | "
            f"{summary.loc[key, 'fit_seconds_mean']:.2f} |"
        )
    if plot_name:
        lines += ["", f"![Test accuracy per data set and model]({plot_name})"]
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"


def write_results(section, path, name="compare"):
    """Put ``section`` between the ``name`` markers of ``path``.

    Only the text between ``<!-- name:start -->`` and ``<!-- name:end -->``
    is replaced; other sections of the file are kept. A file without the
    markers gets the section appended; a missing file is created.

    Parameters
    ----------
    section : str
        Text starting with the start marker and ending with the end marker.
    path : str or Path
        The RESULTS.md file.
    name : str, default="compare"
        Name of the section in its markers.
    """
    start_marker, end_marker = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# Benchmarks\n\n" + section, encoding="utf-8")
        return
    text = path.read_text(encoding="utf-8")
    start, end = text.find(start_marker), text.find(end_marker)
    if start != -1 and end > start:
        text = text[:start] + section.rstrip("\n") + text[end + len(end_marker) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def _require_matplotlib():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            "The benchmark's bar chart needs matplotlib: pip install 'sk-i2m2[plot]' "
            "(or pass --no-plot)."
        ) from error
    return matplotlib


def plot_results(summary, path):
    """Bar chart of test accuracy (mean ± std) per model, one panel per data set.

    Parameters
    ----------
    summary : pandas.DataFrame
        Output of :func:`summarize`.
    path : str or Path
        PNG file to write.
    """
    matplotlib = _require_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary.index.get_level_values(0).unique())
    n_cols = min(4, len(names))
    n_rows = -(-len(names) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 2.9 * n_rows), squeeze=False)
    colors = {
        "intra": "#4c72b0",
        "inter (concat)": "#dd8452",
        "inter (lrtf)": "#c44e52",
        "I2M2": "#55a868",
    }
    for ax, name in zip(axes.flat, names):
        part = summary.loc[name]
        models = list(part.index)
        ax.bar(
            range(len(models)),
            part["accuracy_mean"],
            yerr=part["accuracy_std"],
            color=[colors.get(m, "#a0a0a0") for m in models],
            capsize=2,
        )
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(
            [m.replace(EXPERT_PREFIX, "") for m in models], rotation=60, ha="right", fontsize=7
        )
        low = max(0.0, float((part["accuracy_mean"] - part["accuracy_std"]).min()) - 0.05)
        ax.set_ylim(low, 1.0)
        ax.set_title(DATASETS[name].title, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (mean ± std)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(
    *,
    quick=False,
    datasets=None,
    seeds=None,
    max_epochs=None,
    output_dir="benchmarks",
    plot=True,
    n_jobs=1,
    command="sk-i2m2 benchmark",
    verbose=1,
):
    """Run the benchmark and write ``RESULTS.md`` (and ``compare.png``) to ``output_dir``.

    Parameters
    ----------
    quick : bool, default=False
        Use :data:`QUICK` for the settings not given.
    datasets, seeds, max_epochs : optional
        See :func:`run_benchmark`; ``None`` takes the full (or quick) setting.
    output_dir : str or Path, default="benchmarks"
        Folder of ``RESULTS.md`` and ``compare.png``.
    plot : bool, default=True
        Write the bar chart (needs matplotlib).
    n_jobs : int, default=1
        Parallel fits.
    command : str
        The command line recorded in RESULTS.md.
    verbose : int, default=1
        1 prints progress and the claims.

    Returns
    -------
    summary : pandas.DataFrame
        Output of :func:`summarize`.
    """
    if plot:
        _require_matplotlib()  # fail before training, not after
    defaults = QUICK if quick else {"datasets": None, "seeds": 5, "max_epochs": None}
    datasets = defaults["datasets"] if datasets is None else datasets
    seeds = defaults["seeds"] if seeds is None else seeds
    max_epochs = defaults["max_epochs"] if max_epochs is None else max_epochs
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)

    start = time.perf_counter()
    results = run_benchmark(datasets, seed_list, max_epochs, n_jobs=n_jobs, verbose=verbose)
    summary = summarize(results)
    checks = check_claims(summary)
    elapsed = time.perf_counter() - start

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plot_name = None
    if plot:
        plot_name = "compare.png"
        plot_results(summary, output_dir / plot_name)
    section = results_section(
        summary,
        checks,
        command=command,
        seeds=seed_list,
        max_epochs=max_epochs,
        plot_name=plot_name,
        elapsed=elapsed,
    )
    write_results(section, output_dir / "RESULTS.md")
    if verbose:
        for c in checks:
            status = "holds" if c["holds"] else "DOES NOT HOLD"
            print(f"{DATASETS[c['dataset']].title}: {c['claim']}: {status} ({c['evidence']})")
        print(f"Wrote {output_dir / 'RESULTS.md'} in {elapsed / 60:.1f} min.")
    return summary


def add_arguments(parser, output_dir="benchmarks"):
    """Add the benchmark's command-line options to an ``argparse`` parser."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer data sets, seeds and epochs (a few minutes on 2 CPU cores)",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        choices=list(DATASETS),
        metavar="NAME",
        help=f"data sets to run (default: all of {', '.join(DATASETS)})",
    )
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5)")
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="override I2M2Classifier's max_epochs"
    )
    parser.add_argument("--n-jobs", type=int, default=1, help="fits run in parallel processes")
    parser.add_argument(
        "--output-dir",
        default=str(output_dir),
        help=f"folder of RESULTS.md and compare.png (default: {output_dir})",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG bar chart")
    return parser


def run_from_args(args, command):
    """Run :func:`main` with options parsed by a parser from :func:`add_arguments`."""
    return main(
        quick=args.quick,
        datasets=args.datasets,
        seeds=args.seeds,
        max_epochs=args.max_epochs,
        output_dir=args.output_dir,
        plot=not args.no_plot,
        n_jobs=args.n_jobs,
        command=command,
    )
