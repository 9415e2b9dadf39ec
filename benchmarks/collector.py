"""Python's garbage collector during small-cohort fits: paused (the default) against running.

Run from the repository root::

    python -m benchmarks.collector
    python -m benchmarks.collector --rounds 2 --loop-fits 5 --sets bc-80 digits-150

A fit pauses Python's automatic garbage collection on a small cohort
(:mod:`sk_i2m2._gc`). This measures what the pause saves, as users run
fits: every measurement runs in a fresh process (imports included,
torch's default threads), with the pause as shipped (``paused``) or
switched off (``running``). The two take turns, the first of each pair
alternating by round. Three ways of fitting:

- ``first fit``: one default ``I2M2Classifier(random_state=0)`` fit of
  the seed-0 split of a ``benchmarks/small_cohorts.py`` set, right after
  the imports, as in a script or a notebook's first fit;
- ``loop``: one warm-up fit, then default fits of the splits of seeds
  0 to ``--loop-fits`` - 1 in a row, as cross-validation runs them (mean
  seconds per fit);
- ``search``: the breast-cancer ``GridSearchCV`` of
  ``benchmarks/small_search.py`` (8 candidates x 5 folds and a refit, one
  process).

Each cell gives the median over the rounds of the timed part's seconds
and, from ``gc.callbacks``, the mean number of full collections (of the
oldest generation) that ran in it and their mean total seconds.

The section between ``<!-- collector:start -->`` and
``<!-- collector:end -->`` of ``benchmarks/RESULTS.md`` is rewritten unless
``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, checkout_env, script_command, section_start, write_results
from benchmarks.small_cohorts import SETS

SECTION = "collector"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SETS = ("bc-80", "bc-569", "mfeat-fou-zer-100", "synthetic-mixed-100", "digits-150")
VARIANTS = ("paused", "running")

# One measurement: ``python -c _WORKER way variant set n_fits``; prints a
# JSON object with the timed seconds, the full collections in them and
# their seconds, and the objects the collector tracks after the imports
# and after the timed part.
_WORKER = r"""
import contextlib, gc, json, sys, time, warnings
warnings.filterwarnings("ignore")
way, variant, name, n_fits = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
timing = {"on": False, "started": 0.0, "count": 0, "seconds": 0.0}

def on_collection(phase, info):
    if not timing["on"] or info["generation"] != 2:
        return
    if phase == "start":
        timing["started"] = time.perf_counter()
    else:
        timing["count"] += 1
        timing["seconds"] += time.perf_counter() - timing["started"]

gc.callbacks.append(on_collection)
import sk_i2m2._fit
from sk_i2m2 import I2M2Classifier
from benchmarks.small_cohorts import load_split
if variant == "running":
    sk_i2m2._fit.collector_paused = lambda pause=True: contextlib.nullcontext()
tracked = len(gc.get_objects())
if way == "search":
    from benchmarks.small_search import search_data, i2m2_search
    X, y = search_data(name)
    timing["on"] = True
    seconds, _ = i2m2_search(X, y)
else:
    splits = [load_split(name, seed) for seed in range(max(n_fits, 1))]
    if way == "loop":
        X_train, _, y_train, _ = splits[0]
        I2M2Classifier(random_state=0).fit(X_train, y_train)
    timing["on"] = True
    start = time.perf_counter()
    for seed, (X_train, _, y_train, _) in enumerate(splits[:n_fits]):
        I2M2Classifier(random_state=seed).fit(X_train, y_train)
    seconds = (time.perf_counter() - start) / n_fits
timing["on"] = False
print(json.dumps({"seconds": seconds, "collections": timing["count"],
                  "collection_seconds": timing["seconds"], "tracked": tracked,
                  "tracked_after": len(gc.get_objects())}))
"""


def measure(way, variant, name, n_fits):
    """One fresh process's figures (see ``_WORKER``)."""
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, way, variant, name, str(n_fits)],
        cwd=ROOT,
        env=checkout_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(measurements, rounds):
    """``{(way, set): {variant: [figures of each round]}}``, the variants taking turns."""
    results = {}
    for way, name, n_fits in measurements:
        cell = results.setdefault((way, name), {variant: [] for variant in VARIANTS})
        for round_ in range(rounds):
            order = VARIANTS if round_ % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                figures = measure(way, variant, name, n_fits)
                cell[variant].append(figures)
                print(
                    f"{way} {name} {variant}: {figures['seconds']:.3f}s, "
                    f"{figures['collections']} full collection(s) in "
                    f"{figures['collection_seconds']:.3f}s",
                    flush=True,
                )
    return results


def summary(figures):
    """Median seconds, mean full collections and their mean seconds over the rounds."""
    return (
        float(np.median([f["seconds"] for f in figures])),
        float(np.mean([f["collections"] for f in figures])),
        float(np.mean([f["collection_seconds"] for f in figures])),
    )


def results_section(results, *, command, duration, rounds, loop_fits):
    every = [f for cell in results.values() for figures in cell.values() for f in figures]
    tracked = int(np.median([f["tracked"] for f in every]))
    tracked_after = int(np.median([f["tracked_after"] for f in every]))
    lines = [
        *section_start(
            SECTION,
            "Garbage collection: paused while a small cohort trains, against running",
            command,
            duration=duration,
        ),
        f"- protocol: as in the script's docstring; {rounds} round(s), every measurement in "
        f"a fresh process, torch's default threads; `loop`: {loop_fits} fits after a "
        "warm-up, seconds per fit; `search`: `small_search`'s breast-cancer GridSearchCV. "
        "Seconds are medians over the rounds; full collections (of the oldest generation) "
        "and their seconds are means over the rounds, for the whole timed part.",
        f"- objects the collector tracks (medians): {tracked:,} after the imports, "
        f"{tracked_after:,} after the timed part (its lazy imports included).",
        "",
        "| set | way | paused (s) | full collections | their time (s) | running (s) "
        "| full collections | their time (s) | paused / running |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (way, name), cell in results.items():
        paused, running = summary(cell["paused"]), summary(cell["running"])
        lines.append(
            f"| {SETS[name].title if name in SETS else name} | {way} | {paused[0]:.3f} | "
            f"{paused[1]:.1f} | {paused[2]:.3f} | {running[0]:.3f} | {running[1]:.1f} | "
            f"{running[2]:.3f} | {paused[0] / running[0]:.2f} |"
        )
    lines.append(f"<!-- {SECTION}:end -->")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), choices=sorted(SETS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loop-fits", type=int, default=10)
    parser.add_argument("--no-search", action="store_true", help="skip the GridSearchCV")
    parser.add_argument("--no-write", action="store_true", help="print, leave RESULTS.md")
    args = parser.parse_args(argv)
    measurements = [("first fit", name, 1) for name in args.sets]
    measurements += [("loop", name, args.loop_fits) for name in args.sets]
    if not args.no_search:
        measurements.append(("search", "bc-569", 0))
    start = time.perf_counter()
    results = run(measurements, args.rounds)
    section = results_section(
        results,
        command=script_command("collector", argv),
        duration=f"{(time.perf_counter() - start) / 60:.1f} min",
        rounds=args.rounds,
        loop_fits=args.loop_fits,
    )
    if not args.no_write:
        write_results(section, RESULTS, name=SECTION)
    print(section)
    return results


if __name__ == "__main__":
    main()
