"""benchmarks/: the shared module, gpu_check.sh's report and the speed.py output it reads.

The full dry run (every step of the GPU check on the CPU at toy sizes, about
a minute) runs with ``GPU_CHECK_DRY_RUN=1``::

    GPU_CHECK_DRY_RUN=1 python -m pytest tests/test_benchmarks.py
"""

import contextlib
import datetime
import importlib
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import gpu_check_report, speed
from benchmarks.common import expected_calibration_error, write_results

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(path.stem for path in BENCHMARKS.glob("*.py") if path.stem != "__init__")


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_imports_as_a_module_of_the_package(name):
    """``python -m benchmarks.<name>`` works: its imports leave the import path alone."""
    if name == "onnx_latency":
        pytest.importorskip("onnxruntime")
    path = list(sys.path)
    importlib.import_module(f"benchmarks.{name}")
    assert sys.path == path


def test_expected_calibration_error():
    proba = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    assert expected_calibration_error([0, 0, 0, 1], proba) == pytest.approx(0.5 * 0.1 + 0.5 * 0.4)
    assert expected_calibration_error([0, 1], np.full((2, 2), 0.5)) == pytest.approx(0.0)


def test_regime_rows_are_paired_with_the_defaults_by_seed():
    import pandas as pd

    from benchmarks.small_cohorts_report import regime_differences

    rows = [
        # I2M2 beats the regime by 10 and 0 points; log losses 0.1 lower; half the time.
        ("bc-80", 0, "I2M2", 0.9, 0.3, 1.0),
        ("bc-80", 0, "regime: x", 0.8, 0.4, 2.0),
        ("bc-80", 1, "I2M2", 0.7, 0.5, 1.0),
        ("bc-80", 1, "regime: x", 0.7, 0.6, 2.0),
        ("bc-80", 0, "LR concat", 0.5, 0.9, 0.1),
    ]
    results = pd.DataFrame(
        rows, columns=["dataset", "seed", "model", "accuracy", "log_loss", "fit_seconds"]
    )
    lines = regime_differences(results)
    assert lines[-1] == "| breast cancer n=80 | x | +5.0 ± 5.0 | -0.100 ± 0.000 | 0.50 |"
    assert regime_differences(results[results["model"] != "regime: x"]) == []


def test_write_results_replaces_only_its_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    section = "<!-- compare:start -->\nfirst\n<!-- compare:end -->\n"
    write_results(section, path, name="compare")
    assert path.read_text().count("first") == 1
    path.write_text(
        "# Benchmarks\n\n## Speed\nfast\n\n"
        + path.read_text().split("\n\n", 1)[1]
        + "\n## Other\nkept\n"
    )
    write_results(section.replace("first", "second"), path, name="compare")
    text = path.read_text()
    assert "second" in text and "first" not in text
    assert "## Speed\nfast" in text and "## Other\nkept" in text
    assert text.count("<!-- compare:start -->") == 1


def test_revisions_fits_each_revision_with_its_own_package():
    """benchmarks.revisions: both workers fit, each importing its own checkout's sk_i2m2."""
    from benchmarks import revisions

    worktrees_before = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True
    ).stdout
    ((name, base_s, now_s, base_accuracy, now_accuracy),) = revisions.fit_rows(
        "HEAD", ["synthetic-mixed-100"], [0]
    )
    assert name == "synthetic-mixed-100"
    assert base_s > 0 and now_s > 0
    # Both learned the binary labels of the split.
    assert 0.5 < base_accuracy <= 1 and 0.5 < now_accuracy <= 1
    worktrees_after = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True
    ).stdout
    assert worktrees_after == worktrees_before  # the temporary worktree is removed


def test_fit_breakdown_counts_the_parts_of_a_default_fit():
    """benchmarks.fit_breakdown: the parts of a default L-BFGS fit, timed as fitted."""
    from benchmarks import fit_breakdown
    from benchmarks.small_cohorts import load_split

    X_train, _, y_train, _ = load_split("bc-80", 0)
    parts = fit_breakdown.measure(X_train, y_train, 0)
    # Each epoch of a stage net is one L-BFGS step of at least one closure
    # evaluation, then one validation pass over the fold's held-out rows.
    assert parts.evaluations >= parts.epochs > 0
    assert parts.validation_passes == parts.epochs
    shares = (parts.closures, parts.validation, parts.lbfgs, parts.epoch_loop, parts.rest)
    assert all(share > 0 for share in shares)
    assert sum(shares) == pytest.approx(parts.instrumented)
    assert 0 < parts.floor < parts.instrumented
    assert parts.fit > 0 and parts.mlp > 0


def test_collector_measures_a_first_fit_in_a_fresh_process_both_ways():
    """benchmarks.collector: a paused fit runs no full collection; both report their heap."""
    from benchmarks import collector

    paused = collector.measure("first fit", "paused", "synthetic-mixed-100", 1)
    running = collector.measure("first fit", "running", "synthetic-mixed-100", 1)
    assert paused["collections"] == 0 and paused["collection_seconds"] == 0
    for figures in (paused, running):
        assert figures["seconds"] > 0
        assert 0 < figures["tracked"] < figures["tracked_after"]


def test_revisions_refuses_an_unknown_revision(capsys):
    from benchmarks import revisions

    with pytest.raises(SystemExit):
        revisions.main(["no-such-revision", "--no-write"])
    assert "'no-such-revision' is not a commit" in capsys.readouterr().err


def test_script_parses():
    result = subprocess.run(
        ["bash", "-n", str(BENCHMARKS / "gpu_check.sh")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_speed_output_is_what_the_report_reads():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        speed.main(["--device", "cpu", "--no-conv", "--n-samples", "64", "--epochs", "1"])
    (case,) = gpu_check_report.speed_cases(out.getvalue())
    assert case["title"].startswith("CPU case")
    missing = [k for k, v in case.items() if v is None and k != "cuda_mb"]
    assert not missing, out.getvalue()


SPEED_LOG = """\
torch 2.14.1+cu130, x86_64, 16 threads, device cuda (NVIDIA H100 80GB HBM3)

== AV-MNIST shapes: 20000 samples, 1016 MB of inputs, batch 2048, 5 epochs per stage, device cuda
I2M2Classifier.fit     13.83 s        14466 samples/s
hand-written loop       5.27 s        37979 samples/s
  joint fine-tune stage alone      39674 samples/s
  epochs of both stages          5.80 s
  set-up outside the epochs      8.03 s (validation, input statistics, model, data placement)
predict_proba           0.64 s        31150 samples/s
peak process RSS        4900 MB (inputs 1016 MB)
peak CUDA memory       10400 MB
ratio 2.624
"""


def _run_folder(tmp_path, rc_speed=0):
    (tmp_path / "env.log").write_text(
        "name, memory.total [MiB], driver_version\n"
        "NVIDIA H100 80GB HBM3, 81559 MiB, 580.159.04\n"
        "versions: CUDA 13.0 (available: True), skorch 1.4.0\n"
    )
    (tmp_path / "steps.tsv").write_text(
        "cuda-tests\tpython3 -m pytest -k cuda\t0\t41\n"
        f"speed\tpython3 -m benchmarks.speed --no-conv --no-accuracy\t{rc_speed}\t70\n"
        "large-batch\tpython3 -m benchmarks.large_batch --device cuda\t124\t120\n"
    )
    (tmp_path / "cuda-tests.log").write_text("........\n8 passed, 70 deselected in 30.12s\n")
    (tmp_path / "speed.log").write_text(SPEED_LOG)
    (tmp_path / "large-batch.log").write_text("batch    32  constant   seed 0  accuracy 0.9\n")
    (tmp_path / "small_cohort.md").write_text("| device | median fit (s) |\n|---|---|\n")
    return tmp_path


def test_report_section(tmp_path):
    text = gpu_check_report.section(
        _run_folder(tmp_path), command="bash benchmarks/gpu_check.sh", dry_run=False
    )
    assert "## GPU check: NVIDIA H100 80GB HBM3" in text
    assert "- command: `bash benchmarks/gpu_check.sh`" in text
    assert "skorch 1.4.0" in text
    assert "- failed steps: large-batch" in text and "**timed out**" in text
    assert "- 8 passed, 70 deselected in 30.12s" in text
    # the AV-MNIST figures: ratio, set-up apart from the epochs, fine-tune and predict rates
    assert "| **2.624** | 8.03 s | 5.80 s | 39,674 samples/s | 31,150 samples/s" in text
    assert "10,400 MB / 4,900 MB" in text
    # a step cut short still leaves its per-fit lines
    assert "batch    32  constant   seed 0  accuracy 0.9" in text
    assert "| device | median fit (s) |" in text


def test_report_appends_a_dated_section(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmarks\n\n<!-- speed:start -->\nold\n<!-- speed:end -->\n")
    (tmp_path / "run").mkdir()
    folder = _run_folder(tmp_path / "run", rc_speed=1)
    earlier = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    text = gpu_check_report.section(folder, command="c", dry_run=True, now=earlier)
    write_results(text, results, name="gpu-check-20260101-000000-dry-run")
    with contextlib.redirect_stdout(io.StringIO()):
        gpu_check_report.main(
            [str(folder), "--output", str(results), "--command", "c", "--dry-run"]
        )
    text = results.read_text()
    assert text.startswith("# Benchmarks\n\n<!-- speed:start -->\nold\n<!-- speed:end -->\n")
    assert text.count("## GPU check, CPU DRY RUN") == 2  # each run keeps its own section
    assert "**failed (exit 1)**" in text


@pytest.mark.skipif(
    os.environ.get("GPU_CHECK_DRY_RUN") != "1" or shutil.which("timeout") is None,
    reason="the full dry run takes about a minute: set GPU_CHECK_DRY_RUN=1",
)
def test_cpu_dry_run(tmp_path):
    before = (BENCHMARKS / "RESULTS.md").read_bytes()
    result = subprocess.run(
        ["bash", str(BENCHMARKS / "gpu_check.sh"), "--cpu-dry-run"],
        env={**os.environ, "OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "every step passed" in result.stdout
    assert (BENCHMARKS / "RESULTS.md").read_bytes() == before
    (scratch,) = tmp_path.glob("gpu_check_dry_run_*/RESULTS.md")
    assert "## GPU check, CPU DRY RUN" in scratch.read_text()
