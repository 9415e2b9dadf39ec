"""What the benchmark scripts share: data, scikit-learn baselines, metrics and RESULTS.md sections.

Scripts import it as ``benchmarks.common``; run them as modules from the
repository root (``python -m benchmarks.compare --quick``), so that both
``benchmarks`` and the checkout's ``sk_i2m2`` import without path changes.
Heavy libraries are imported inside the functions: the GPU check's report
imports this module on a machine that may lack them.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: The results file every script writes its section to by default.
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

# ----------------------------------------------------------------------
# Data: multi-modal ``(X, y)`` with ``X`` a ``{modality: array}`` mapping.


@functools.cache
def mfeat_views(views):
    """UCI Multiple Features digits with the given ``views`` (a tuple) as modalities."""
    from sk_i2m2 import ModalityDict
    from sk_i2m2.datasets import load_mfeat

    X, y = load_mfeat(list(views))
    return ModalityDict({m: np.asarray(X[m]) for m in views}), np.asarray(y)


def synthetic_classification(n_samples, intra_strength, inter_strength, random_state):
    """``make_multimodal_classification`` with 2 modalities of 10 features."""
    from sk_i2m2 import ModalityDict
    from sk_i2m2.datasets import make_multimodal_classification

    X, y = make_multimodal_classification(
        n_samples=n_samples,
        n_modalities=2,
        n_features=10,
        intra_strength=intra_strength,
        inter_strength=inter_strength,
        random_state=random_state,
    )
    return ModalityDict({m: np.asarray(X[m]) for m in X}), np.asarray(y)


@contextlib.contextmanager
def patched(constants):
    """Internal constants of sk-i2m2 set for the block: dotted name -> value.

    How a benchmark row measures a setting that is not a parameter (an
    outcome's stopping threshold, a solver's tolerance) beside the default.
    """
    from unittest import mock

    with contextlib.ExitStack() as stack:
        for target, value in (constants or {}).items():
            stack.enter_context(mock.patch(target, value))
        yield


@contextlib.contextmanager
def torch_threads(n_threads=None):
    """torch's intra-op threads set to ``n_threads`` for the block (if given), restored after it."""
    import torch

    previous = torch.get_num_threads()
    if n_threads is not None:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class LBFGSCounts:
    """What :func:`counting_lbfgs` adds up: closure evaluations, their seconds, the steps' seconds."""

    def __init__(self):
        self.calls, self.closure_seconds, self.step_seconds = 0, 0.0, 0.0


@contextlib.contextmanager
def counting_lbfgs():
    """Count and time the L-BFGS closure evaluations and steps of the fits in the block.

    Each full-batch stage net trains with a subclass of the very class it
    would train with (:func:`sk_i2m2.training.flat_lbfgs.full_batch_optimizer`),
    whose ``step`` times itself and each closure evaluation, so the fit is
    timed as fitted. Yields the :class:`LBFGSCounts` the steps add to;
    ``step_seconds`` includes the closures.
    """
    from sk_i2m2.training import stages

    counts, choose = LBFGSCounts(), stages.full_batch_optimizer

    def counting(optimizer):
        class Counting(optimizer):
            def step(self, closure):
                def timed():
                    begin = time.perf_counter()
                    try:
                        return closure()
                    finally:
                        counts.calls += 1
                        counts.closure_seconds += time.perf_counter() - begin

                begin = time.perf_counter()
                try:
                    return super().step(timed)
                finally:
                    counts.step_seconds += time.perf_counter() - begin

        Counting.__name__ = Counting.__qualname__ = f"Counting{optimizer.__name__}"
        return Counting

    with patched({"sk_i2m2.training.stages.full_batch_optimizer": lambda o: counting(choose(o))}):
        yield counts


@functools.cache
def warm_up():
    """One small I2M2 fit per process, so that no timed fit pays the first fit's set-up."""
    from sk_i2m2 import I2M2Classifier

    X, y = synthetic_classification(60, 0.5, 1.5, 0)
    I2M2Classifier(max_epochs=1, random_state=0).fit(X, y)


@functools.cache
def breast_cancer_views():
    """scikit-learn's breast-cancer table as three views of 10 features: mean, error, worst."""
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
def digits_image_table():
    """The 8x8 digits as an image (n, 1, 8, 8), ink / 16, and a table of row and column sums."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = data.images.astype(np.float32)  # (1797, 8, 8), ink 0..16
    table = np.concatenate([images.sum(axis=2), images.sum(axis=1)], axis=1) / 16.0
    return {"image": images[:, None] / 16.0, "table": table.astype(np.float32)}, data.target


def flatten(X, dtype=None):
    """Every modality as columns of one table (images and sequences flattened).

    ``dtype`` converts the columns (``None`` keeps the modalities' own); the
    baselines below pass it on, so that a script keeps the precision its
    figures were measured with.
    """
    return np.concatenate(
        [np.asarray(x, dtype=dtype).reshape(len(x), -1) for x in X.values()], axis=1
    )


# ----------------------------------------------------------------------
# Baselines: fit(X_train, y_train, seed) -> predict_proba(X)


def standard_logistic():
    """``StandardScaler`` + ``LogisticRegression`` (default ``C``), the statistician's model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))


def _on_concatenation(model, X, y, dtype):
    model.fit(flatten(X, dtype), y)
    return lambda X_new: model.predict_proba(flatten(X_new, dtype))


def logistic_concat(X, y, seed, dtype=None):
    """:func:`standard_logistic` on the concatenation of all modalities."""
    return _on_concatenation(standard_logistic(), X, y, dtype)


def logistic_product(X, y, seed):
    """One :func:`standard_logistic` per modality, combined as their normalised product.

    The softmax of the summed log-probabilities: the linear counterpart of
    the intra product of experts.
    """
    from scipy.special import softmax

    models = {m: standard_logistic().fit(flatten({m: x}), y) for m, x in X.items()}

    def predict_proba(X_new):
        # Clipped: a probability that underflows to 0 must not make the sum -inf.
        logs = sum(
            np.log(np.clip(model.predict_proba(flatten({m: X_new[m]})), 1e-300, None))
            for m, model in models.items()
        )
        return softmax(logs, axis=1)

    return predict_proba


def logistic_cv_concat(X, y, seed, dtype=None):
    """``StandardScaler`` + ``LogisticRegressionCV`` (C by 5-fold CV) on the concatenation."""
    import warnings

    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with warnings.catch_warnings():
        # scikit-learn 1.9 announces new defaults; the current ones are measured.
        warnings.simplefilter("ignore", FutureWarning)
        model = make_pipeline(StandardScaler(), LogisticRegressionCV(max_iter=5000))
        return _on_concatenation(model, X, y, dtype)


def hgb_concat(X, y, seed, dtype=None):
    """``HistGradientBoostingClassifier(random_state=seed)`` on the concatenation."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return _on_concatenation(HistGradientBoostingClassifier(random_state=seed), X, y, dtype)


def mlp_concat(X, y, seed, dtype=None):
    """``StandardScaler`` + ``MLPClassifier(early_stopping=True)`` on the concatenation."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), MLPClassifier(early_stopping=True, random_state=seed))
    return _on_concatenation(model, X, y, dtype)


# ----------------------------------------------------------------------
# Metrics and summaries


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


def classification_scores(proba, classes, y_test):
    """Test accuracy, macro one-vs-rest AUROC, log loss, Brier score and ECE.

    Parameters
    ----------
    proba : ndarray of shape (n_samples, n_classes)
        Predicted probabilities, columns in the order of ``classes``.
    classes : ndarray of shape (n_classes,)
        Sorted class labels.
    y_test : array-like of shape (n_samples,)
        True labels.

    Returns
    -------
    scores : dict
        ``accuracy``, ``auroc``, ``log_loss``, ``brier`` and ``ece``.
    """
    from sklearn.metrics import log_loss, roc_auc_score

    y_index = np.searchsorted(classes, y_test)
    # A probability of exactly 0 would make the log loss infinite.
    proba = np.clip(proba, 1e-15, None)
    proba = proba / proba.sum(axis=1, keepdims=True)
    labels = np.arange(proba.shape[1])
    if proba.shape[1] == 2:
        auroc = roc_auc_score(y_index, proba[:, 1])
    else:
        auroc = roc_auc_score(y_index, proba, multi_class="ovr", average="macro", labels=labels)
    return {
        "accuracy": float((proba.argmax(axis=1) == y_index).mean()),
        "auroc": float(auroc),
        "log_loss": float(log_loss(y_index, proba, labels=labels)),
        "brier": float(np.mean(np.sum((proba - np.eye(proba.shape[1])[y_index]) ** 2, axis=1))),
        "ece": expected_calibration_error(y_index, proba),
    }


def summarize_seeds(results, metrics, ddof=0):
    """Mean and standard deviation over seeds of each (dataset, model).

    Parameters
    ----------
    results : pandas.DataFrame
        One row per fit, with ``dataset``, ``model`` and the ``metrics`` columns.
    metrics : list of str
        Columns to summarise.
    ddof : int, default=0
        Delta degrees of freedom of the standard deviation (0: population,
        which is 0 for one seed).

    Returns
    -------
    summary : pandas.DataFrame
        Indexed by (dataset, model) in order of appearance, with columns
        ``<metric>_mean`` and ``<metric>_std``.
    """
    grouped = results.groupby(["dataset", "model"], sort=False)[list(metrics)]
    return grouped.mean().add_suffix("_mean").join(grouped.std(ddof=ddof).add_suffix("_std"))


def multilabel_positive_proba(model, X):
    """Each label's probability of being positive, ``(n_samples, n_labels)``.

    ``MultiOutputClassifier`` gives one ``(n, 2)`` array per label; an
    ``I2M2Classifier`` fitted on multilabel ``y`` gives the columns already.
    """
    proba = model.predict_proba(X)
    return np.column_stack([p[:, 1] for p in proba]) if isinstance(proba, list) else proba


def multilabel_scores(Y, proba):
    """Subset accuracy, macro AUROC and the mean over labels of the binary log loss."""
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    proba = np.clip(proba, 1e-7, 1 - 1e-7)
    return {
        "subset_accuracy": accuracy_score(Y, (proba > 0.5).astype(int)),
        "macro_auroc": roc_auc_score(Y, proba, average="macro"),
        "log_loss": float(
            np.mean([log_loss(Y[:, j], proba[:, j], labels=[0, 1]) for j in range(Y.shape[1])])
        ),
    }


def multilabel_table(rows, models, time_digits=1):
    """Markdown rows of :func:`multilabel_scores` and fit time per model, mean ± std over ``rows``.

    ``rows`` hold one score row per fit (with ``model`` and ``fit_s``).
    """
    lines = [
        "| model | subset accuracy | macro AUROC | log loss (mean over labels) | fit time (s) |",
        "|---|---|---|---|---|",
    ]
    for name in models:
        sel = [r for r in rows if r["model"] == name]
        lines.append(
            f"| {name} | {mean_std([r['subset_accuracy'] for r in sel])} | "
            f"{mean_std([r['macro_auroc'] for r in sel])} | "
            f"{mean_std([r['log_loss'] for r in sel])} | "
            f"{mean_std([r['fit_s'] for r in sel], time_digits)} |"
        )
    return lines


def mean_std(values, digits=3):
    """``"mean ± std"`` of ``values`` (population std)."""
    return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def summary_cell(summary, key, metric, digits=3):
    """``"mean ± std"`` of ``metric`` in row ``key`` of a :func:`summarize_seeds` table."""
    mean, std = summary.loc[key, f"{metric}_mean"], summary.loc[key, f"{metric}_std"]
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


# ----------------------------------------------------------------------
# Running


def run_tasks(function, tasks, n_jobs, describe):
    """``function(*task)`` for each task, in ``n_jobs`` processes; their rows, in task order.

    Each call returns a list of result rows; ``describe(row)`` is printed for
    each as its task finishes, so that a long run shows its progress.
    """
    from joblib import Parallel, delayed

    jobs = Parallel(n_jobs=n_jobs, return_as="generator")(
        delayed(function)(*task) for task in tasks
    )
    rows = []
    for task_rows in jobs:
        for row in task_rows:
            print(describe(row), flush=True)
        rows += task_rows
    return rows


def median_seconds(call, repeats, warm=3):
    """Median wall time of ``call()`` over ``repeats`` calls, after ``warm`` untimed ones.

    The warm-up calls allocate and plan (kernels, buffers) what the timed
    ones reuse.
    """
    for _ in range(warm):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(functions, device, min_rounds=7, min_seconds=0.5, max_seconds=2.0):
    """Median wall time in ms of each of ``functions`` (a dict), the device synchronised.

    The functions take turns, one call each per round, so that a shared
    machine's load weighs on all of them alike; a first round warms them up.
    At least ``min_rounds`` timed rounds and ``min_seconds``, unless rounds
    are so slow that 2 of them pass ``max_seconds``.
    """
    import torch

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = {name: [] for name in functions}
    start, rounds = time.perf_counter(), -1
    while True:
        for name, function in functions.items():
            sync()
            begin = time.perf_counter()
            function()
            sync()
            if rounds >= 0:
                times[name].append(time.perf_counter() - begin)
        rounds += 1
        elapsed = time.perf_counter() - start
        enough = rounds >= min_rounds and elapsed >= min_seconds
        if enough or (rounds >= 2 and elapsed >= max_seconds) or rounds >= 100:
            return {name: 1000 * statistics.median(t) for name, t in times.items()}


@contextlib.contextmanager
def busy_core(enabled):
    """A process spinning on one core while the block runs (nothing when not ``enabled``)."""
    if not enabled:
        yield
        return
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it take its core
        yield
    finally:
        spinner.kill()
        spinner.wait()


def checkout_env():
    """The environment for a fresh Python process that imports this checkout's packages.

    The repository root comes first on ``PYTHONPATH``, so that ``sk_i2m2``
    and ``benchmarks`` import from the checkout whatever the working directory.
    """
    root = str(RESULTS.parent.parent)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))


def script_command(module, argv=None):
    """The command line that reruns script ``module`` (e.g. ``"targets"``) with ``argv``.

    ``argv`` defaults to this process's arguments; the result is what the
    sections of RESULTS.md record.
    """
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["python", "-m", f"benchmarks.{module}", *args])


# ----------------------------------------------------------------------
# RESULTS.md sections


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


def utc_now():
    """The current time as RESULTS.md writes it: ``2026-01-31 12:00 UTC``."""
    return f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"


def section_start(name, title, command, duration=None, machine=None):
    """The opening lines of a section: start marker, heading, date, machine and command.

    Parameters
    ----------
    name : str
        Name of the section in its markers (see :func:`write_results`).
    title : str
        The heading, without ``##``.
    command : str
        The command line that reruns the benchmark.
    duration : str, optional
        How long it took, shown after the command (e.g. ``"3.2 min"``).
    machine : str, optional
        The machine line; default :func:`machine_description`.

    Returns
    -------
    lines : list of str
    """
    return [
        f"<!-- {name}:start -->",
        f"## {title}",
        "",
        f"- date: {utc_now()}",
        f"- machine: {machine or machine_description()}",
        f"- command: `{command}`" + (f" ({duration})" if duration else ""),
    ]


def write_results(section, path=RESULTS, name="compare"):
    """Put ``section`` between the ``name`` markers of ``path``.

    Only the text between ``<!-- name:start -->`` and ``<!-- name:end -->``
    is replaced; other sections of the file are kept. A file without the
    markers gets the section appended; a missing file is created.

    Parameters
    ----------
    section : str
        Text starting with the start marker and ending with the end marker.
    path : str or Path, default=RESULTS
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
