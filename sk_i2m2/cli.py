"""Command line: ``sk-i2m2 demo`` and ``sk-i2m2 benchmark`` (also ``python -m sk_i2m2 ...``)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

from .datasets._mfeat import MFEAT_VIEWS

# The benchmark suite is not shipped in the package: it lives in the source
# repository's benchmarks/ folder, next to the package folder.
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def demo(views=("fou", "zer", "mor"), random_state=0):
    """Train I2M2, then its intra and inter baselines, on bundled mfeat views; print accuracies.

    One estimator with ``warm_start=True``: the baselines keep the experts the
    I2M2 fit trained in stage 1, so the intra model runs only its stage 2 and
    the inter model only its calibration.
    """
    from sklearn.model_selection import train_test_split

    from . import I2M2Classifier
    from .datasets import load_mfeat

    X, y = load_mfeat(list(views))
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=random_state
    )
    print(
        f"UCI Multiple Features digits, views {', '.join(views)}: "
        f"{len(X_train)} training and {len(X_test)} test samples, 10 classes."
    )
    clf = I2M2Classifier(warm_start=True, random_state=random_state, verbose=1)
    rows = []
    for dependencies, label in [
        ("both", "I2M2 (intra x inter)"),
        ("intra", "intra (product of per-view experts)"),
        ("inter", "inter (late-fusion expert)"),
    ]:
        print(f"\nTraining {label} ...", flush=True)
        start = time.perf_counter()
        clf.set_params(dependencies=dependencies).fit(X_train, y_train)
        rows.append((label, clf.score(X_test, y_test), time.perf_counter() - start))
        if dependencies == "both":
            experts = {
                name: (p.argmax(1) == y_test).mean() for name, p in clf.expert_proba(X_test).items()
            }
    expert_rows = [
        (f"  expert {name} of the fitted I2M2", acc, None) for name, acc in experts.items()
    ]
    rows = expert_rows + rows
    width = max(len(r[0]) for r in rows) + 2
    print("\nTest accuracy (the baselines reuse I2M2's stage-1 experts: warm_start=True)")
    for label, acc, seconds in rows:
        timing = f"  ({seconds:.1f}s)" if seconds is not None else ""
        print(f"  {label:<{width}}{acc:.3f}{timing}")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="sk-i2m2",
        description="I2M2 multi-modal classification for scikit-learn: a demo on bundled "
        "data, and the benchmark suite of a source checkout.",
        epilog="Also runs as: python -m sk_i2m2 COMMAND",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo_parser = commands.add_parser(
        "demo",
        help="train I2M2 and its intra and inter baselines on bundled data",
        description="Train I2M2, then its intra and inter baselines, on views of the bundled "
        "UCI Multiple Features digits, and print their test accuracies.",
    )
    demo_parser.add_argument(
        "--views",
        nargs="+",
        default=["fou", "zer", "mor"],
        choices=list(MFEAT_VIEWS),
        metavar="VIEW",
        help=f"mfeat views to use as modalities, from {', '.join(MFEAT_VIEWS)} "
        "(default: fou zer mor)",
    )
    demo_parser.add_argument(
        "--random-state",
        type=int,
        default=0,
        metavar="SEED",
        help="seed of the train/test split and of the model (default: 0)",
    )
    comparison = _comparison_module()
    benchmark_parser = commands.add_parser(
        "benchmark",
        help="compare single-modality experts, intra, inter and I2M2; write RESULTS.md "
        "(source checkout only)",
    )
    if comparison is not None:
        comparison.add_arguments(benchmark_parser, output_dir=BENCHMARKS)
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(tuple(args.views), args.random_state)
    elif args.command == "benchmark":
        if comparison is None:
            parser.error(
                f"the benchmark suite is not installed with the package; run it "
                f"from a source checkout ({BENCHMARKS} does not exist)."
            )
        command = " ".join(["sk-i2m2", *(sys.argv[1:] if argv is None else argv)])
        comparison.run_from_args(args, command)
    return 0


def _comparison_module():
    """``benchmarks/compare.py`` of a source checkout, or ``None``.

    ``benchmarks`` is a package beside ``sk_i2m2`` that is not installed. The
    ``sk-i2m2`` console script lacks the repository root on its import path,
    which ``python -m`` run there has; the root is added at the end, not a
    module loaded from its file, because the worker processes of ``--n-jobs``
    start with this process's import path and must import the benchmark too.
    """
    if not (BENCHMARKS / "compare.py").is_file():
        return None
    if importlib.util.find_spec("benchmarks") is None:
        sys.path.append(str(BENCHMARKS.parent))
    return importlib.import_module("benchmarks.compare")
