"""Default fits of two revisions of sk-i2m2 on the same small-cohort splits, in turns.

Run from the repository root::

    python -m benchmarks.revisions HEAD~1
    python -m benchmarks.revisions 2641eaa --sets bc-80 mfeat-fou-zer-300 --seeds 0 1 2

What a change does to fit time, measured so that the machine's load shifts
both sides alike: the base revision is checked out in a temporary git
worktree, and this checkout (its working tree, uncommitted changes
included) is the other side. Each side fits in its own worker process,
which imports its own ``sk_i2m2``; the two take turns on every split of
``benchmarks/small_cohorts.py`` (``load_split`` of this checkout, sent to
both), the first of each pair alternating by seed, with a garbage
collection before each fit and one untimed warm-up fit per worker. Each
fit is ``I2M2Classifier(random_state=seed)`` with default settings and
torch's default threads. The table gives, per set, the mean fit time and
test accuracy of each side over the seeds.

The section between ``<!-- revisions:start -->`` and ``<!-- revisions:end -->``
of ``benchmarks/RESULTS.md`` is rewritten unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import common
from benchmarks.small_cohorts import SETS, load_split

SECTION = "revisions"
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SETS = ("bc-80", "bc-569", "mfeat-fou-zer-300", "synthetic-mixed-100", "digits-150")

# The worker's whole program: it reads pickled ``(X_train, X_test, y_train,
# y_test, seed)`` from stdin and answers ``(fit seconds, test accuracy)``.
_WORKER = r"""
import gc, pickle, sys, time, warnings
warnings.filterwarnings("ignore")
import sk_i2m2
from sk_i2m2 import I2M2Classifier
answers = sys.stdout.buffer
sys.stdout = sys.stderr  # nothing else may write to the answers' pipe
pickle.dump(sk_i2m2.__file__, answers)
answers.flush()
while True:
    try:
        X_train, X_test, y_train, y_test, seed = pickle.load(sys.stdin.buffer)
    except EOFError:
        break
    clf = I2M2Classifier(random_state=seed)
    gc.collect()
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    pickle.dump((seconds, float(clf.score(X_test, y_test))), answers)
    answers.flush()
"""


class _Worker:
    """A process that fits with the ``sk_i2m2`` of checkout ``root``."""

    def __init__(self, root):
        # PYTHONPATH comes before site-packages, so an editable install of
        # another checkout does not shadow this one's package.
        env = {**os.environ, "PYTHONPATH": str(root)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WORKER],
            cwd=root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        package = Path(pickle.load(self.process.stdout)).resolve()
        if Path(root).resolve() not in package.parents:
            self.close()
            raise RuntimeError(f"the worker for {root} imported sk_i2m2 from {package}")

    def fit(self, split, seed):
        """``(fit seconds, test accuracy)`` of a default fit on ``split``."""
        pickle.dump((*split, seed), self.process.stdin)
        self.process.stdin.flush()
        return pickle.load(self.process.stdout)

    def close(self):
        self.process.stdin.close()
        self.process.wait()


@contextlib.contextmanager
def _worktree(revision):
    """A temporary git worktree of ``revision``, removed afterwards."""
    path = tempfile.mkdtemp(prefix="sk-i2m2-")
    git = ["git", "-C", str(ROOT), "worktree"]
    subprocess.run([*git, "add", "--detach", "-q", path, revision], check=True)
    try:
        yield Path(path)
    finally:
        subprocess.run([*git, "remove", "--force", path], check=True)


def _describe(revision=None):
    """The short commit of ``revision``, or of this checkout with ``+ changes`` if dirty."""
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", revision or "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if revision is None:
        changes = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        commit += " + uncommitted changes" if changes.strip() else ""
    return commit


def fit_rows(base, sets, seeds):
    """``(set, base s, now s, base accuracy, now accuracy)``: means over ``seeds``."""
    with _worktree(base) as base_root:
        workers = {}
        try:
            workers["base"] = _Worker(base_root)
            workers["now"] = _Worker(ROOT)
            warm_up = load_split(sets[0], seeds[0])
            for worker in workers.values():
                worker.fit(warm_up, seeds[0])
            rows = []
            for name in sets:
                results = {side: ([], []) for side in workers}
                for turn, seed in enumerate(seeds):
                    split = load_split(name, seed)
                    for side in ("base", "now") if turn % 2 == 0 else ("now", "base"):
                        seconds, accuracy = workers[side].fit(split, seed)
                        results[side][0].append(seconds)
                        results[side][1].append(accuracy)
                (base_s, base_acc), (now_s, now_acc) = (
                    (np.mean(results[side][0]), np.mean(results[side][1]))
                    for side in ("base", "now")
                )
                rows.append((name, base_s, now_s, base_acc, now_acc))
        finally:
            for worker in workers.values():
                worker.close()
    return rows


def section(rows, base, now, seeds, duration, load):
    lines = common.section_start(
        SECTION,
        "Fit time of a change: two revisions fitted in turns on small cohorts",
        common.script_command(SECTION),
        duration=f"{duration / 60:.1f} min",
    )
    lines += [
        f"- base: {base}; now: {now}",
        f"- machine load: 1-minute load average {load[0]:.1f} before, {load[1]:.1f} after",
        "- protocol: `I2M2Classifier(random_state=seed)` defaults, torch's default threads, "
        f"seeds {', '.join(map(str, seeds))}, the splits of `benchmarks/small_cohorts.py`; "
        "one worker process per revision, the two fitting each split in turns (alternating "
        "which goes first), a garbage collection before each fit. Means over the seeds.",
        "",
        "| data set | base fit (s) | now fit (s) | now / base | base accuracy | now accuracy |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {base_s:.3f} | {now_s:.3f} | {now_s / base_s:.2f} | {base_acc:.3f} "
        f"| {now_acc:.3f} |"
        for name, base_s, now_s, base_acc, now_acc in rows
    ]
    lines += [f"<!-- {SECTION}:end -->", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the revision to compare with (e.g. HEAD~1, a commit)")
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), choices=sorted(SETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--output", default=str(common.RESULTS), help="RESULTS.md to update")
    args = parser.parse_args(argv)
    known = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}"],
        capture_output=True,
    )
    if known.returncode:
        parser.error(f"{args.base!r} is not a commit of the repository at {ROOT}")
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    base, now = _describe(args.base), _describe()
    rows = fit_rows(args.base, args.sets, args.seeds)
    load = (load_before, os.getloadavg()[0])
    text = section(rows, base, now, args.seeds, time.perf_counter() - start, load)
    print(text)
    if not args.no_write:
        common.write_results(text, args.output, name=SECTION)


if __name__ == "__main__":
    main()
