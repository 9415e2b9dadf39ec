"""Torch threads on a small machine: when a second thread pays, and what users wait for.

Run from the repository root::

    python -m benchmarks.threads            # operators and README examples
    python -m benchmarks.threads --quick    # operators and the five-line example

Two parts, each measured on the idle machine and again while a busy-loop
process holds one core (as on a shared laptop, CI runner or notebook server):

- **Operators**: the forward and backward pass of models of growing size,
  with one thread and with every core, next to their forward FLOPs as
  counted by ``torch.utils.flop_counter``. This is where
  ``sk_i2m2._threads.PARALLEL_STEP_FLOPS`` comes from.
- **What users wait for**: the README's five-line example, its
  ``GridSearchCV`` example and ``sk-i2m2 demo``, each in a fresh process with
  torch's default threads (what users run) and with ``OMP_NUM_THREADS=1``.

The section between ``<!-- threads:start -->`` and ``<!-- threads:end -->``
of ``benchmarks/RESULTS.md`` is rewritten.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    RESULTS,
    busy_core,
    checkout_env,
    script_command,
    section_start,
    write_results,
)

ROOT = Path(__file__).resolve().parents[1]
SECTION = "threads"


def operator_rows(threads):
    """``(name, forward MFLOP, ms with 1 thread, ms with `threads`)`` of each model."""
    import torch
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode

    def lenet():
        return nn.Sequential(
            nn.Conv2d(1, 6, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(256, 120),
        )

    cases = [
        ("linear 30->2, 400 rows (a small cohort's expert)", nn.Linear(30, 2), (400, 30)),
        (
            "MLP 100-256-256-10, 256 rows",
            nn.Sequential(nn.Linear(100, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU()),
            (256, 100),
        ),
        ("LeNet on 28x28, 256 rows", lenet(), (256, 1, 28, 28)),
        ("LeNet on 28x28, 1024 rows", lenet(), (1024, 1, 28, 28)),
        (
            "MLP 1000-512-512, 1024 rows",
            nn.Sequential(nn.Linear(1000, 512), nn.ReLU(), nn.Linear(512, 512)),
            (1024, 1000),
        ),
    ]

    def milliseconds(model, x, n_threads, repeats=20):
        torch.set_num_threads(n_threads)
        for _ in range(3):
            model(x).sum().backward()
        start = time.perf_counter()
        for _ in range(repeats):
            model(x).sum().backward()
        return (time.perf_counter() - start) / repeats * 1e3

    rows = []
    previous = torch.get_num_threads()
    try:
        for name, model, shape in cases:
            x = torch.randn(shape)
            with FlopCounterMode(display=False) as counter:
                model(x)
            rows.append(
                (
                    name,
                    counter.get_total_flops() / 1e6,
                    milliseconds(model, x, 1),
                    milliseconds(model, x, threads),
                )
            )
    finally:
        torch.set_num_threads(previous)
    return rows


def readme_block(marker):
    """The first ```python block of README.md that contains ``marker``."""
    text = (ROOT / "README.md").read_text()
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.S):
        if marker in block:
            return block
    raise ValueError(f"No README python block contains {marker!r}.")


def user_commands(quick):
    """``(label, argv)`` of what a user runs, each in a fresh process."""
    commands = [("README five-line example", ["-c", readme_block("load_mfeat([")])]
    if not quick:
        commands += [
            ("README GridSearchCV example", ["-c", readme_block("GridSearchCV(")]),
            ("sk-i2m2 demo", ["-m", "sk_i2m2", "demo"]),
        ]
    return commands


def wall_seconds(argv, one_thread):
    """Wall time of ``python argv`` in a fresh process, in a scratch directory."""
    env = checkout_env()
    env.pop("OMP_NUM_THREADS", None)
    if one_thread:
        env["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, *argv], cwd=scratch, env=env, check=True, stdout=subprocess.DEVNULL
        )
        return time.perf_counter() - start


def results_section(operators, users, *, command, threads):
    lines = [
        *section_start(
            SECTION, "Threads: one where the work is small, idle and with a busy core", command
        ),
        "- busy core: a `python -c 'while True: pass'` process running beside the measurement.",
        "",
        f"Forward + backward pass, milliseconds, 1 thread against {threads} (torch's default "
        "here). sk-i2m2 uses one thread unless a batch's forward pass reaches "
        "`PARALLEL_STEP_FLOPS` = 1 GFLOP.",
        "",
        "| model | forward MFLOP | idle: 1 thread | idle: default | busy core: 1 thread "
        "| busy core: default |",
        "|---|---|---|---|---|---|",
    ]
    for (name, mflop, one, many), (_, _, one_busy, many_busy) in zip(
        operators["idle"], operators["busy"]
    ):
        lines.append(
            f"| {name} | {mflop:,.1f} | {one:.2f} | {many:.2f} | {one_busy:.2f} | {many_busy:.2f} |"
        )
    lines += [
        "",
        "What users wait for, seconds of wall time in a fresh process (import included), "
        "with torch's default threads (what users run) and with `OMP_NUM_THREADS=1`:",
        "",
        "| run | idle: default | idle: 1 thread | busy core: default | busy core: 1 thread "
        "| busy core: default / 1 thread |",
        "|---|---|---|---|---|---|",
    ]
    for label, times in users.items():
        lines.append(
            f"| {label} | {times['idle', False]:.1f} | {times['idle', True]:.1f} | "
            f"{times['busy', False]:.1f} | {times['busy', True]:.1f} | "
            f"{times['busy', False] / times['busy', True]:.2f} |"
        )
    lines.append(f"<!-- {SECTION}:end -->")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the five-line example")
    parser.add_argument(
        "--output",
        default=str(RESULTS),
        help="RESULTS.md to update ('-' prints only)",
    )
    args = parser.parse_args(argv)

    import torch

    threads = torch.get_num_threads()
    operators, users = {}, {}
    for load in ("idle", "busy"):
        with busy_core(load == "busy"):
            operators[load] = operator_rows(threads)
            for label, command in user_commands(args.quick):
                for one_thread in (False, True):
                    seconds = wall_seconds(command, one_thread)
                    users.setdefault(label, {})[load, one_thread] = seconds
                    print(
                        f"{load:<5} {label:<30} one thread={one_thread}: {seconds:.1f}s", flush=True
                    )
    for load, rows in operators.items():
        for name, mflop, one, many in rows:
            print(f"{load:<5} {name:<50} {mflop:9.1f} MFLOP  {one:7.2f} ms  {many:7.2f} ms")
    section = results_section(
        operators, users, command=script_command("threads", argv), threads=threads
    )
    if args.output != "-":
        write_results(section, args.output, name=SECTION)
    print(section)


if __name__ == "__main__":
    main()
