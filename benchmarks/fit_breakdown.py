"""Where a small-cohort fit's time goes, and what is left without the training loop's overhead.

Run from the repository root::

    python -m benchmarks.fit_breakdown
    python -m benchmarks.fit_breakdown --sets bc-80 mfeat-fou-zer-300 --seeds 0 1 --no-write

A default fit on a small cohort of vectors (5 cross-fitted fold models, each
trained in two stages by a skorch net with L-BFGS on all its training
rows) spends its time in five parts, timed in one fit whose
internals are wrapped with timers:

- ``closures``: the L-BFGS closure evaluations of the stage nets (forward
  pass, loss and backward pass on all training rows, through skorch's
  ``train_step_single``);
- ``validation``: the stage nets' validation passes, one per epoch, which
  early stopping needs;
- ``L-BFGS``: the optimizer's own work around the closures (the two-loop
  recursion, the line search, moving and copying the parameters);
- ``epoch loop``: the rest of the stage nets' ``fit`` (skorch's
  initialisation, callbacks and history);
- ``rest``: everything outside the stage nets (input checks, building the
  modules, the linear experts' solve, held-out predictions, calibration,
  weighing the experts).

``floor`` is closures + validation + rest: the fit if the optimizer's
bookkeeping and skorch's epoch loop cost nothing, with the same evaluations
of the same torch operations. Set beside ``MLPClassifier(early_stopping=True)``
on the same rows (``small_cohorts.py`` asks for a fit within 10 times its
time), it says how far replacing the optimizer and the epoch loop alone
could go. Per set, medians over the seeds of one process with torch's
default threads (the fit chooses its own), after one warm-up fit; ``fit`` is
a plain default fit, timed apart from the instrumented one.

The section between ``<!-- fit_breakdown:start -->`` and
``<!-- fit_breakdown:end -->`` of ``benchmarks/RESULTS.md`` is rewritten
unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, fields

import numpy as np

from benchmarks import common
from benchmarks.small_cohorts import SETS, load_split

SECTION = "fit_breakdown"
TARGET_RATIO = 10.0  # small_cohorts.py's fit-time target, in MLPClassifier fits
# Every set of small_cohorts.py whose default fit trains with L-BFGS (the
# digits sets have a conv expert, which trains with AdamW on mini-batches).
DEFAULT_SETS = tuple(name for name in SETS if not name.startswith("digits"))


@dataclass(frozen=True)
class Breakdown:
    """The parts of one default fit, in seconds, and the counts behind them."""

    fit: float  # a plain default fit
    mlp: float  # MLPClassifier(early_stopping=True) on the same rows
    instrumented: float  # the fit with timers, the sum of the five parts
    closures: float
    validation: float
    lbfgs: float
    epoch_loop: float
    rest: float
    evaluations: int  # L-BFGS closure evaluations
    epochs: int  # epochs of all stage nets (one validation pass each)
    validation_passes: int

    @property
    def floor(self):
        return self.closures + self.validation + self.rest


def measure(X, y, seed):
    """The :class:`Breakdown` of a default ``I2M2Classifier`` fit on ``X, y``.

    Raises ``ValueError`` where the default fit does not train with L-BFGS.
    """
    from skorch import NeuralNet

    from sk_i2m2 import I2M2Classifier
    from sk_i2m2._sizing import is_full_batch
    from sk_i2m2.training import stages

    start = time.perf_counter()
    common.mlp_concat(X, y, seed)
    mlp = time.perf_counter() - start
    start = time.perf_counter()
    I2M2Classifier(random_state=seed).fit(X, y)
    fit = time.perf_counter() - start

    timed = {"stage nets": 0.0, "validation": 0.0, "validation passes": 0}
    run_stage, validation_step = stages._run_stage, NeuralNet.validation_step

    def timed_run_stage(*args, **kwargs):
        begin = time.perf_counter()
        try:
            return run_stage(*args, **kwargs)
        finally:
            timed["stage nets"] += time.perf_counter() - begin

    def timed_validation_step(self, batch, **fit_params):
        begin = time.perf_counter()
        try:
            return validation_step(self, batch, **fit_params)
        finally:
            timed["validation"] += time.perf_counter() - begin
            timed["validation passes"] += 1

    with (
        common.counting_lbfgs() as counts,
        common.patched(
            {
                "sk_i2m2.training.stages._run_stage": timed_run_stage,
                "skorch.NeuralNet.validation_step": timed_validation_step,
            }
        ),
    ):
        start = time.perf_counter()
        fitted = I2M2Classifier(random_state=seed).fit(X, y)
        instrumented = time.perf_counter() - start
    if not is_full_batch(fitted.optimizer_):
        raise ValueError(f"the default fit trains with {fitted.optimizer_.__name__}, not L-BFGS")
    nets = [net for pair in fitted.fold_nets_ for net in pair if net is not None]
    return Breakdown(
        fit=fit,
        mlp=mlp,
        instrumented=instrumented,
        closures=counts.closure_seconds,
        validation=timed["validation"],
        lbfgs=counts.step_seconds - counts.closure_seconds,
        epoch_loop=timed["stage nets"] - counts.step_seconds - timed["validation"],
        rest=instrumented - timed["stage nets"],
        evaluations=counts.calls,
        epochs=sum(len(net.history) for net in nets),
        validation_passes=timed["validation passes"],
    )


def breakdown_rows(sets, seeds):
    """``(set, n_train, median Breakdown)`` per set, each field the median over ``seeds``."""
    common.warm_up()
    rows = []
    for name in sets:
        results = []
        for seed in seeds:
            X_train, _, y_train, _ = load_split(name, seed)
            results.append(measure(X_train, y_train, seed))
            print(f"{name} seed {seed}: {results[-1]}", flush=True)
        median = Breakdown(
            **{
                field.name: type(getattr(results[0], field.name))(
                    np.median([getattr(result, field.name) for result in results])
                )
                for field in fields(Breakdown)
            }
        )
        rows.append((name, len(y_train), median))
    return rows


def _share(part, whole):
    return f"{part:.3f} ({100 * part / whole:.0f} %)"


def section(rows, seeds, duration, load):
    lines = common.section_start(
        SECTION,
        "Where a small-cohort fit's time goes: the floor without the optimizer's and the "
        "epoch loop's overhead",
        common.script_command(SECTION),
        duration=f"{duration / 60:.1f} min",
    )
    lines += [
        f"- machine load: 1-minute load average {load[0]:.1f} before, {load[1]:.1f} after",
        "- protocol: the splits of `benchmarks/small_cohorts.py`, seeds "
        f"{', '.join(map(str, seeds))}; per split, `MLPClassifier(early_stopping=True)` "
        "(`MLP concat`), a plain default `I2M2Classifier(random_state=seed)` fit and one "
        "with timers around the L-BFGS closures and steps, the stage nets' `fit` and their "
        "validation steps; one process, torch's default threads. Medians over the seeds, "
        "each column on its own; the parts (seconds, in brackets their share of the "
        "instrumented fit) are as in the script's docstring. `floor` = closures + "
        "validation + rest: the fit without the optimizer's bookkeeping and skorch's "
        "epoch loop.",
        "",
        "| data set | n train | fit (s) | MLP (s) | fit / MLP | instrumented fit (s) "
        "| closures | validation | L-BFGS | epoch loop | rest | evaluations / epochs "
        "| floor (s) | floor / MLP |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, n_train, b in rows:
        whole = b.instrumented
        lines.append(
            f"| {SETS[name].title} | {n_train} | {b.fit:.3f} | {b.mlp:.3f} "
            f"| {b.fit / b.mlp:.0f}x | {whole:.3f} | {_share(b.closures, whole)} "
            f"| {_share(b.validation, whole)} | {_share(b.lbfgs, whole)} "
            f"| {_share(b.epoch_loop, whole)} | {_share(b.rest, whole)} "
            f"| {b.evaluations} / {b.epochs} | {b.floor:.3f} | {b.floor / b.mlp:.1f}x |"
        )
    within = [name for name, _, b in rows if b.floor <= TARGET_RATIO * b.mlp]
    mean_share = {
        part: np.mean([getattr(b, part) / b.instrumented for _, _, b in rows])
        for part in ("closures", "validation", "lbfgs", "epoch_loop", "rest")
    }
    lines += [
        "",
        f"- floor within {TARGET_RATIO:.0f}x `MLP concat`: {len(within)} of {len(rows)} sets"
        + (f" ({', '.join(SETS[name].title for name in within)})" if within else "")
        + f"; the plain fit: {sum(b.fit <= TARGET_RATIO * b.mlp for _, _, b in rows)} of "
        f"{len(rows)}.",
        "- mean share of the instrumented fit: "
        + ", ".join(
            f"{label} {100 * mean_share[part]:.0f} %"
            for part, label in (
                ("closures", "closures"),
                ("validation", "validation"),
                ("lbfgs", "L-BFGS"),
                ("epoch_loop", "epoch loop"),
                ("rest", "rest"),
            )
        )
        + ".",
        f"<!-- {SECTION}:end -->",
        "",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), choices=DEFAULT_SETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--output", default=str(common.RESULTS), help="RESULTS.md to update")
    args = parser.parse_args(argv)
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    rows = breakdown_rows(args.sets, args.seeds)
    load = (load_before, os.getloadavg()[0])
    text = section(rows, args.seeds, time.perf_counter() - start, load)
    print(text)
    if not args.no_write:
        common.write_results(text, args.output, name=SECTION)


if __name__ == "__main__":
    main()
