"""Which data show what I2M2 is for: intra, inter and I2M2 over seeds.

``sk-i2m2 demo`` should show data where the per-modality experts (intra)
miss the cross-modal interaction and the fused expert (inter) misses part of
the within-modality signal. This script measures candidate data sets (regimes
of :func:`sk_i2m2.datasets.make_multimodal_classification`, the k-space
digits, the mfeat views) the way the demo fits them (one
``I2M2Classifier(warm_start=True, random_state=seed)``: I2M2, then
``dependencies="intra"``, then ``"inter"``), beside a logistic regression and
gradient boosting on the concatenated modalities, over several seeds, and
writes the table into ``benchmarks/RESULTS.md``.

Per seed: synthetic data are drawn with ``random_state=seed``; every set is
split 70/30 (stratified, ``random_state=seed``). Run from the repository
root, as the RESULTS.md section was made::

    python -m benchmarks.demo_regimes --seeds 0-4 --write candidates
    python -m benchmarks.demo_regimes --regimes mixed-1000 kspace-8x8 \\
        --seeds 0-14 --write demo
    python -m benchmarks.demo_regimes --time-demo --write timing
"""

from __future__ import annotations

import argparse
import datetime
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sk_i2m2 import I2M2Classifier
from sk_i2m2.cli import DEMO_MFEAT_VIEWS
from sk_i2m2.datasets import load_kspace_digits, load_mfeat, make_multimodal_classification

from .common import RESULTS, machine_description, script_command

SECTION = "demo_regimes"


def _synthetic(**params):
    def load(seed):
        return make_multimodal_classification(**params, random_state=seed)

    load.arguments = ", ".join(f"{k}={v}" for k, v in params.items())
    return load


def _kspace(source):
    def load(seed):
        return load_kspace_digits(source)

    load.arguments = f"load_kspace_digits({source!r})"
    return load


def _mfeat(views):
    def load(seed):
        return load_mfeat(views)

    load.arguments = f"load_mfeat({views!r})"
    return load


#: Candidate data: a loader ``seed -> (X, y)`` and why each is a candidate.
REGIMES = {
    "mixed-1000": (
        _synthetic(
            n_samples=1000, n_modalities=2, n_features=10, intra_strength=0.5, inter_strength=1.5
        ),
        "the generator's documented mixed regime (700 training rows: small-cohort defaults)",
    ),
    "mixed-2000": (
        _synthetic(
            n_samples=2000, n_modalities=2, n_features=10, intra_strength=0.5, inter_strength=1.5
        ),
        "the same with 1400 training rows (mini-batch defaults)",
    ),
    "balanced-1000": (
        _synthetic(
            n_samples=1000, n_modalities=2, n_features=10, intra_strength=1.0, inter_strength=1.5
        ),
        "intra signal as strong as the interaction: each alone about 0.85-0.9",
    ),
    "balanced-2000": (
        _synthetic(
            n_samples=2000, n_modalities=2, n_features=10, intra_strength=1.0, inter_strength=1.5
        ),
        "the same with 1400 training rows",
    ),
    "three-1000": (
        _synthetic(
            n_samples=1000, n_modalities=3, n_features=10, intra_strength=0.7, inter_strength=1.5
        ),
        "three modalities: the intra signal adds up over three experts",
    ),
    "wide-2000": (
        _synthetic(
            n_samples=2000, n_modalities=2, n_features=30, intra_strength=0.7, inter_strength=1.5
        ),
        "30 features per modality: a joint model must find the intra directions among 60",
    ),
    "kspace-8x8": (
        _kspace("sklearn"),
        "k-space magnitude and phase of 1797 8 x 8 digits: each alone describes the digit "
        "in part, and the image is a joint function of both (the inverse FFT)",
    ),
    "kspace-16x15": (
        _kspace("mfeat"),
        "the same from the 2000 16 x 15 mfeat digits (the accuracy benchmark's set)",
    ),
    "mfeat": (
        _mfeat(list(DEMO_MFEAT_VIEWS)),
        "the earlier demo's data: three feature sets of the same digits, each strong alone",
    ),
}
MODELS = ("I2M2", "intra", "inter", "LR concat", "HGB concat")


def run_seed(load, seed):
    """Test accuracy and fit seconds of each model on one draw of the data."""
    X, y = load(seed)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=seed
    )
    scores, seconds = {}, {}
    clf = I2M2Classifier(warm_start=True, random_state=seed)
    for model, dependencies in [("I2M2", "both"), ("intra", "intra"), ("inter", "inter")]:
        start = time.perf_counter()
        clf.set_params(dependencies=dependencies).fit(X_train, y_train)
        seconds[model] = time.perf_counter() - start
        scores[model] = clf.score(X_test, y_test)
    # The baselines read the modalities side by side, images flattened.
    train, test = (
        np.hstack([np.asarray(part[m]).reshape(len(part[m]), -1) for m in sorted(X)])
        for part in (X_train, X_test)
    )
    for model, baseline in [
        ("LR concat", make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
        ("HGB concat", HistGradientBoostingClassifier(random_state=seed)),
    ]:
        start = time.perf_counter()
        baseline.fit(train, y_train)
        seconds[model] = time.perf_counter() - start
        scores[model] = baseline.score(test, y_test)
    return scores, seconds


def parse_seeds(text):
    """``"0-4"`` or ``"0,3,7"`` -> list of ints."""
    if "-" in text:
        first, last = map(int, text.split("-"))
        return list(range(first, last + 1))
    return [int(s) for s in text.split(",")]


def table(results, seeds):
    """Markdown rows: regime, generator arguments, mean ± std per model, I2M2 − best baseline."""
    lines = [
        "| data | arguments | "
        + " | ".join(MODELS)
        + " | I2M2 − max(intra, inter) | I2M2 fit (s) |",
        "|---" * (len(MODELS) + 4) + "|",
    ]
    for name, (scores, seconds) in results.items():
        args = REGIMES[name][0].arguments
        cells = [f"{np.mean(scores[m]):.3f} ± {np.std(scores[m]):.3f}" for m in MODELS]
        gaps = np.array(scores["I2M2"]) - np.maximum(scores["intra"], scores["inter"])
        lines.append(
            f"| {name} | {args} | "
            + " | ".join(cells)
            + f" | {100 * gaps.mean():+.1f} ± {100 * gaps.std():.1f} pt "
            f"({(gaps > 0).sum()}/{len(seeds)} seeds > 0) | {np.mean(seconds['I2M2']):.1f} |"
        )
    return lines


#: The RESULTS.md subsections this script writes, by ``--write`` label.
SUBSECTIONS = {
    "candidates": "### Candidates (the choice was made on these seeds)",
    "demo": "### The demo's data sets on more seeds",
    "timing": "### What `sk-i2m2 demo` costs",
}


def time_demo():
    """RESULTS.md lines: wall and CPU seconds of ``python -m sk_i2m2 demo``, default threads.

    The demo runs in a fresh process (import included) with ``OMP_NUM_THREADS``
    unset, as a user runs it. Its CPU time (user + system, from
    ``getrusage``) bounds the wall time of an otherwise idle machine from
    above when the demo keeps to one thread; on a shared machine the wall
    time is longer.
    """
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    root = Path(__file__).resolve().parents[1]
    load_before = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sk_i2m2", "demo"], cwd=root, env=env, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- date: {now}",
        f"- machine: {machine_description()}",
        "- command: `python -m benchmarks.demo_regimes --time-demo --write "
        "timing`, which runs `python -m sk_i2m2 demo` once with `OMP_NUM_THREADS` unset",
        f"- machine load: 1-minute load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after",
        "",
        "| run | wall (s) | CPU, user + system (s) |",
        "|---|---|---|",
        f"| `sk-i2m2 demo` (synthetic + kspace, import included) | {wall:.1f} | {cpu:.1f} |",
    ]


def section_intro():
    """The section's heading, protocol and the reason behind each candidate."""
    lines = [
        "## Demo data: where intra and inter each miss something",
        "",
        "`sk-i2m2 demo` should show data where the product of per-modality experts (intra) "
        "misses the cross-modal interaction and the fused expert (inter) misses part of "
        "the within-modality signal. Protocol per seed: the data are drawn with "
        "`random_state=seed` (the k-space sets are fixed), split 70/30 stratified "
        "(`random_state=seed`); one `I2M2Classifier(warm_start=True, random_state=seed)` "
        'with default hyperparameters fits I2M2, then `dependencies="intra"`, then '
        '`"inter"` (as the demo does). `LR concat`: `StandardScaler` + '
        "`LogisticRegression(max_iter=1000)` on the concatenated modalities (images "
        "flattened); `HGB concat`: `HistGradientBoostingClassifier(random_state=seed)` on "
        "the same. Test accuracy, mean ± std over seeds. `I2M2 − max(intra, inter)`: per "
        "seed, in points. Fit times are wall seconds on a machine shared with other work: "
        "indicative only.",
        "",
        "Candidates, each with the reason it was tried:",
        "",
    ]
    lines += [f"- **{name}**: {why}" for name, (_, why) in REGIMES.items()]
    lines += [
        "",
        "The choice, made on seeds 0-4 of the candidates and then measured on seeds 5-14 "
        "as well (the k-space and mfeat candidates were added after the synthetic ones "
        "showed no regime where inter trails): on the generator's data the fused expert, "
        "an MLP on both modalities, "
        "learns the within-modality signal along with the XOR, so it never trails I2M2 by "
        "more than noise; where it fails, it fails on the XOR (three modalities, 30 "
        "features). The mixed regime still shows the first half clearly: intra, like a "
        "logistic regression, cannot see the interaction. The k-space pair shows both "
        "halves: each modality describes the digit in part, so the per-modality experts "
        "carry signal the fused expert does not fully learn, and the image is a joint "
        "function of both, which intra cannot model. The 16 x 15 k-space set shows the "
        "same with a larger gap, for about 2.4 times the CPU time of the 8 x 8 one (24 s "
        "against 10 s for the three fits of seed 0, one thread), so the demo runs the "
        "mixed regime and the 8 x 8 k-space set; `--data mfeat` runs the earlier demo's "
        "data, where the three models are within a point.",
    ]
    return lines


def write_section(label, lines):
    """Put ``lines`` under subsection ``label`` of this script's RESULTS.md section.

    The section (appended at the end of the file the first time) keeps the
    other label's subsection as it was.
    """
    start, end = f"<!-- {SECTION}:start -->", f"<!-- {SECTION}:end -->"
    text = RESULTS.read_text()
    if start in text:
        before, rest = text.split(start, 1)
        old, after = rest.split(end, 1)
    else:
        before, old, after = text.rstrip("\n") + "\n\n", "", "\n"
    blocks = {}
    for other in SUBSECTIONS:
        marks = f"<!-- {SECTION}:{other}:start -->", f"<!-- {SECTION}:{other}:end -->"
        if other == label:
            blocks[other] = [marks[0], SUBSECTIONS[other], "", *lines, marks[1]]
        elif marks[0] in old:
            kept = old.split(marks[0], 1)[1].split(marks[1], 1)[0]
            blocks[other] = [marks[0] + kept + marks[1]]
    body = [start, *section_intro()]
    for other in SUBSECTIONS:
        if other in blocks:
            body += ["", *blocks[other]]
    RESULTS.write_text(before + "\n".join([*body, end]) + after)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    parser.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 0,3,7 (default: 0-4)")
    parser.add_argument(
        "--write",
        choices=list(SUBSECTIONS),
        metavar="LABEL",
        help=f"write the table into RESULTS.md under subsection LABEL ({', '.join(SUBSECTIONS)})",
    )
    parser.add_argument(
        "--time-demo", action="store_true", help="time `sk-i2m2 demo` instead of the regimes"
    )
    args = parser.parse_args(argv)
    if args.time_demo:
        lines = time_demo()
        print("\n".join(lines))
        if args.write:
            write_section(args.write, lines)
        return None, lines
    seeds = parse_seeds(args.seeds)
    command = script_command("demo_regimes", argv)
    results = {}
    begun = time.perf_counter()
    for name in args.regimes:
        load, _ = REGIMES[name]
        scores = {m: [] for m in MODELS}
        seconds = {m: [] for m in MODELS}
        for seed in seeds:
            seed_scores, seed_seconds = run_seed(load, seed)
            for m in MODELS:
                scores[m].append(seed_scores[m])
                seconds[m].append(seed_seconds[m])
            print(name, seed, {m: round(s, 3) for m, s in seed_scores.items()}, flush=True)
        results[name] = (scores, seconds)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"- date: {now}",
        f"- machine: {machine_description()}",
        f"- command: `{command.strip()}` ({(time.perf_counter() - begun) / 60:.1f} min; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')})",
        f"- seeds: {', '.join(map(str, seeds))}; test accuracy, mean ± std over seeds",
        f"- machine load: 1-minute load average {os.getloadavg()[0]:.1f} at the end",
        "",
        *table(results, seeds),
    ]
    print("\n".join(lines))
    if args.write:
        write_section(args.write, lines)
    return results, lines


if __name__ == "__main__":
    main()
