"""The package's layout in numbers: file and class sizes, and the path a ``fit`` takes.

Run from the repository root::

    python -m benchmarks.code_layout              # print the figures
    python -m benchmarks.code_layout --write      # and rewrite its RESULTS.md section

Figures:

- files of ``sk_i2m2/`` and ``benchmarks/`` over 600 lines, classes over 500;
- the walk of one small ``I2M2Classifier().fit`` through the package: the
  files in the order the package's own calls reach them (what torch or
  skorch call back, such as a module's ``forward``, is left out), the
  distinct calls from one file into another, and how many of those enter a
  file the walk had already left. A fit that reads top-down visits each
  file once and rarely re-enters one.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import numpy as np

from .common import script_command, section_start, write_results

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sk_i2m2"


def file_sizes(folder, limit=600):
    """``(path, lines)`` of the ``.py`` files under ``folder`` longer than ``limit`` lines."""
    sizes = [(p, len(p.read_text().splitlines())) for p in sorted(folder.rglob("*.py"))]
    return [(p.relative_to(ROOT), n) for p, n in sizes if n > limit]


def class_sizes(folder, limit=500):
    """``(path, class, lines)`` of the classes under ``folder`` longer than ``limit`` lines."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > limit:
                found.append((path.relative_to(ROOT), node.name, node.end_lineno - node.lineno + 1))
    return found


def fit_path():
    """A small fit's walk through the package: files in order, cross-file calls, re-entries.

    Counted once per distinct call (caller function -> callee function), so
    loops do not inflate the figures; only calls from package code into
    package code in another file count. Returns the files in the order the
    walk first reaches them, the number of distinct cross-file calls (each a
    step down and a climb back up), and how many of those enter a file the
    walk had already left.
    """
    from sk_i2m2 import I2M2Classifier

    rng = np.random.RandomState(0)
    X = {"a": rng.randn(60, 4), "b": rng.randn(60, 3)}
    y = rng.randint(0, 2, 60)
    package = str(PACKAGE)
    files, calls, reentries = [], set(), 0

    def where(code):
        return str(Path(code.co_filename).relative_to(PACKAGE)), code.co_qualname

    def profile(frame, event, arg):
        nonlocal reentries
        caller = frame.f_back
        if event != "call" or caller is None:
            return
        if not (
            frame.f_code.co_filename.startswith(package)
            and caller.f_code.co_filename.startswith(package)
        ):
            return
        (callee_file, callee), (caller_file, _) = where(frame.f_code), where(caller.f_code)
        if not files:
            files.append(caller_file)
        if callee_file == caller_file or (where(caller.f_code), callee) in calls:
            return
        calls.add((where(caller.f_code), callee))
        if callee_file in files:
            reentries += 1
        else:
            files.append(callee_file)

    estimator = I2M2Classifier(max_epochs=2, random_state=0)
    sys.setprofile(profile)
    try:
        estimator.fit(X, y)
    finally:
        sys.setprofile(None)
    return files, len(calls), reentries


def report():
    lines = []
    big_files = file_sizes(PACKAGE) + file_sizes(ROOT / "benchmarks")
    lines.append(f"- files over 600 lines: {len(big_files)}")
    lines += [f"  - `{p}`: {n}" for p, n in big_files]
    big_classes = class_sizes(PACKAGE)
    lines.append(f"- classes over 500 lines: {len(big_classes)}")
    lines += [f"  - `{p}` `{c}`: {n}" for p, c, n in big_classes]
    path, calls, reentries = fit_path()
    lines.append(
        f"- a small `I2M2Classifier().fit`: {len(path)} files, {calls} distinct calls into "
        f"another file (each a step down and a climb back up), {reentries} of them into a "
        "file the walk had already left"
    )
    lines.append("- files in the order the fit's own calls reach them: " + " → ".join(path))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite the RESULTS.md section")
    args = parser.parse_args(argv)
    text = report()
    print(text)
    if args.write:
        lines = section_start("code_layout", "Code layout", script_command("code_layout", argv))
        write_results("\n".join([*lines, text, "<!-- code_layout:end -->"]), name="code_layout")


if __name__ == "__main__":
    main()
