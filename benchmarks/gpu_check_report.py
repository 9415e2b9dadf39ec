"""Write the figures of one ``gpu_check.sh`` run to RESULTS.md as a dated section.

``gpu_check.sh`` leaves, in its work folder, ``steps.tsv`` (one line per
step: name, command, exit status, seconds), ``<step>.log`` (the step's
output), ``env.log`` (``nvidia-smi`` and versions) and, from the steps that
write one, a markdown table (``large_batch.md``, ``small_cohort.md``,
``fold_batching.md``). This
script turns them into one section, appended to ``--output`` between markers
named after the run's date, so that earlier runs stay in the file:

- date, GPU (``nvidia-smi``), torch and library versions, the command;
- every step with its command, status and time;
- the figures of ``speed.py`` per case (fit, hand loop, ratio, set-up time
  outside the epochs, epochs, joint fine-tune and ``predict_proba``
  samples/s, peak memory), the large-batch table, the small-cohort table,
  the fold-batching table and the CUDA tests' summary line.

With ``--dry-run`` the section says so in its title: a dry run's figures are
toy sizes on the CPU, written to a scratch copy of RESULTS.md.

Run from the repository root (``gpu_check.sh`` does)::

    python -m benchmarks.gpu_check_report WORK_FOLDER --output RESULTS_MD --command COMMAND
"""

from __future__ import annotations

import argparse
import datetime
import re
from pathlib import Path

STATUS = {
    0: "ok",
    124: "**timed out**",
    137: "**killed (time limit)**",
    200: "**skipped (budget spent)**",  # gpu_check.sh's status for a step it did not start
}


def read_steps(folder):
    """``[(name, command, exit status, seconds)]`` from ``steps.tsv``."""
    steps = []
    path = Path(folder) / "steps.tsv"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                name, command, rc, seconds = line.split("\t")
                steps.append((name, command, int(rc), float(seconds)))
    return steps


def _read(folder, name):
    path = Path(folder) / name
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


def _number(pattern, text):
    found = re.search(pattern, text, flags=re.MULTILINE)
    return float(found.group(1)) if found else None


def speed_cases(log):
    """Per case printed by ``speed.py``: its title and figures (``None`` where absent)."""
    cases = []
    for block in re.split(r"^== ", log, flags=re.MULTILINE)[1:]:
        title = block.splitlines()[0].strip()
        fit = _number(r"^I2M2Classifier\.fit\s+([\d.]+) s", block)
        hand = _number(r"^hand-written loop\s+([\d.]+) s", block)
        cases.append(
            {
                "title": title,
                "fit_s": fit,
                "fit_rate": _number(r"^I2M2Classifier\.fit\s+[\d.]+ s\s+(\d+) samples/s", block),
                "hand_s": hand,
                # speed.py prints the ratio of unrounded times; the times it
                # prints are rounded to 10 ms, too coarse for a tiny dry run.
                "ratio": _number(r"^ratio ([\d.]+)", block)
                or (fit / hand if fit is not None and hand else None),
                "setup_s": _number(r"set-up outside the epochs\s+([-\d.]+) s", block),
                "epochs_s": _number(r"epochs of both stages\s+([\d.]+) s", block),
                "finetune_rate": _number(r"joint fine-tune stage alone\s+(\d+) samples/s", block),
                "predict_rate": _number(r"^predict_proba\s+[\d.]+ s\s+(\d+) samples/s", block),
                "cuda_mb": _number(r"^peak CUDA memory\s+(\d+) MB", block),
                "rss_mb": _number(r"^peak process RSS\s+(\d+) MB", block),
            }
        )
    return cases


def _fmt(value, spec, unit=""):
    return "—" if value is None else f"{value:{spec}}{unit}"


def speed_table(cases):
    lines = [
        "| case | `fit` | hand loop | ratio | set-up outside the epochs | epochs "
        "| joint fine-tune | `predict_proba` | peak CUDA / RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        lines.append(
            f"| {c['title']} | {_fmt(c['fit_s'], '.2f', ' s')} "
            f"({_fmt(c['fit_rate'], ',.0f')} samples/s) | {_fmt(c['hand_s'], '.2f', ' s')} "
            f"| **{_fmt(c['ratio'], '.3f')}** | {_fmt(c['setup_s'], '.2f', ' s')} "
            f"| {_fmt(c['epochs_s'], '.2f', ' s')} "
            f"| {_fmt(c['finetune_rate'], ',.0f')} samples/s "
            f"| {_fmt(c['predict_rate'], ',.0f')} samples/s "
            f"| {_fmt(c['cuda_mb'], ',.0f', ' MB')} / {_fmt(c['rss_mb'], ',.0f', ' MB')} |"
        )
    return lines


def _table_body(markdown):
    """The table lines of a markdown fragment (the large-batch section's, say)."""
    return [line for line in markdown.splitlines() if line.startswith("|")]


def _partial(log, pattern):
    """The per-fit lines of a step that ended before its table, as a text block."""
    found = [line for line in log.splitlines() if re.match(pattern, line)]
    if not found:
        return ["no figures (see the step's log)"]
    return ["The step ended before its table; its lines so far:", "", "```text", *found, "```"]


def machine_line(env_log):
    """GPU from ``nvidia-smi``'s CSV line, else torch's name for it, and the versions."""
    gpu = None
    for line in env_log.splitlines():
        if line.startswith("name,") or "," not in line:
            continue
        if "NVIDIA" in line or "GPU" in line:
            gpu = line.strip()
            break
    try:
        import torch

        from benchmarks.common import machine_description

        description = machine_description()
        if gpu is None and torch.cuda.is_available():
            gpu = torch.cuda.get_device_name()
    except Exception as exc:  # the report must still be written
        description = f"(versions unavailable: {exc})"
    versions = [line for line in env_log.splitlines() if line.startswith("versions:")]
    if versions:
        description += "; " + versions[0].removeprefix("versions:").strip()
    return gpu or "no GPU", description


def section(folder, *, command, dry_run, now=None):
    """The markdown section of the run whose files are in ``folder``."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    stamp = now.strftime("%Y-%m-%d %H:%M UTC")
    steps = read_steps(folder)
    gpu, description = machine_line(_read(folder, "env.log"))
    failed = [name for name, _, rc, _ in steps if rc != 0]
    total = sum(seconds for *_, seconds in steps)
    marker = "gpu-check-" + now.strftime("%Y%m%d-%H%M%S") + ("-dry-run" if dry_run else "")
    title = (
        f"## GPU check, CPU DRY RUN (toy sizes on the CPU, not figures to quote), {stamp}"
        if dry_run
        else f"## GPU check: {gpu}, {stamp}"
    )
    lines = [
        f"<!-- {marker}:start -->",
        title,
        "",
        f"- date: {stamp}",
        f"- GPU: {gpu}",
        f"- machine: {description}",
        f"- command: `{command}` ({total / 60:.1f} min of steps)",
        f"- failed steps: {', '.join(failed) if failed else 'none'}",
        "",
        "| step | command | status | time (s) |",
        "|---|---|---|---|",
    ]
    for name, step_command, rc, seconds in steps:
        status = STATUS.get(rc, f"**failed (exit {rc})**")
        lines.append(f"| {name} | `{step_command}` | {status} | {seconds:.0f} |")

    tests = _read(folder, "cuda-tests.log")
    # pytest's last line ("3 passed, 200 deselected in 9.1s"), and its FAILED/ERROR lines.
    summary = [line for line in tests.splitlines() if line.startswith(("FAILED", "ERROR"))]
    counts = [
        line.strip("= ").strip()
        for line in tests.splitlines()
        if re.search(
            r"\b(passed|failed|skipped|deselected|errors?|no tests ran)\b.* in [\d.]+s", line
        )
    ]
    summary += counts[-1:]
    lines += ["", "### CUDA tests", "", *(f"- {s}" for s in summary or ["no summary line"])]

    cases = speed_cases(_read(folder, "speed.log"))
    lines += [
        "",
        "### Speed (`benchmarks/speed.py`)",
        "",
        "`fit` includes everything `fit` does; set-up outside the epochs is its time minus "
        "the epochs in the stage nets' histories (validation, input statistics, model, "
        "data placement); joint fine-tune is stage 2's samples/s from its history; "
        "`predict_proba` takes inputs on the host.",
        "",
        *(speed_table(cases) if cases else ["no figures (see the step's log)"]),
    ]

    large = _table_body(_read(folder, "large_batch.md"))
    lines += ["", "### Large batches on the device (`benchmarks/large_batch.py`)", ""]
    lines += large or _partial(_read(folder, "large-batch.log"), r"^batch ")

    small = _read(folder, "small_cohort.md").strip()
    small_log = _read(folder, "small-cohort.log")
    ratio = re.search(r"^small-cohort ratio .*$", small_log, re.M)
    lines += [
        "",
        "### Small cohort: fit time per device (`benchmarks/small_cohort_devices.py`)",
        "",
    ]
    lines += [small] if small else _partial(small_log, r"^\w+: first fit ")
    if ratio:
        lines += ["", f"{ratio.group(0)} (a GPU fit should not be slower: ratio ≤ 1)."]

    folds = _table_body(_read(folder, "fold_batching.md"))
    lines += ["", "### The 5 fold models batched (`benchmarks/fold_batching.py`)", ""]
    lines += folds or _partial(_read(folder, "fold-batching.log"), r"^\S+ +(loop|vmap|grouped)")
    lines.append(f"<!-- {marker}:end -->")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", help="the run's work folder")
    parser.add_argument("--output", required=True, help="the RESULTS.md to append to")
    parser.add_argument("--command", required=True, help="the command that ran the check")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    from benchmarks.common import write_results

    text = section(args.folder, command=args.command, dry_run=args.dry_run)
    marker = re.match(r"<!-- (.+):start -->", text).group(1)
    write_results(text, args.output, name=marker)
    print(text)
    print(f"Wrote the section to {args.output}.")


if __name__ == "__main__":
    main()
