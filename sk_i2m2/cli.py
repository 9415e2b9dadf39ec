"""Command line: ``sk-i2m2 demo`` and ``sk-i2m2 benchmark`` (also ``python -m sk_i2m2 ...``)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import textwrap
import time
from pathlib import Path

from .datasets._mfeat import MFEAT_VIEWS

# The benchmark suite is not shipped in the package: it lives in the source
# repository's benchmarks/ folder, next to the package folder.
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


#: What each demo data set shows. ``measured``: the seeds and the test accuracy
#: (mean ± std over them) that ``benchmarks/demo_regimes.py`` measured, fitting
#: the models as the demo does (its RESULTS.md section, *Demo data*).
DEMO_DATA = {
    "synthetic": {
        "title": "synthetic: make_multimodal_classification(1000, intra_strength=0.5, "
        "inter_strength=1.5)",
        "about": "Two modalities of 10 features. Each tells a little about the label on its "
        "own; most of the signal is an XOR across them, which no single modality shows.",
        "meaning": "intra cannot see the cross-modal XOR and stays far behind; the fused "
        "expert learns it, and I2M2 keeps it.",
        "measured": (
            "0-14",
            "I2M2 0.895 ± 0.014, intra 0.751 ± 0.025, inter 0.895 ± 0.017; "
            "logistic regression 0.748 ± 0.025",
        ),
    },
    "kspace": {
        "title": "k-space: load_kspace_digits('sklearn'), 1797 8x8 digit images",
        "about": "The magnitude and the phase of each image's 2-D Fourier transform, as "
        "two modalities. Each alone describes the digit in part; the image is a joint "
        "function of both (the inverse FFT).",
        "meaning": "the per-modality experts and the fused expert each miss part of the "
        "signal; their product, I2M2, does better than either.",
        "measured": (
            "0-14",
            "I2M2 0.947 ± 0.006, intra 0.938 ± 0.008, inter 0.932 ± 0.009 (I2M2 ahead of "
            "both on 11 of 15 seeds); logistic regression 0.896 ± 0.012",
        ),
    },
    "mfeat": {
        "title": "mfeat: load_mfeat(), UCI Multiple Features digits",
        "about": "Several feature sets (views) of the same handwritten digits; each view "
        "recognises digits well on its own.",
        "meaning": "almost everything is within each view: the three models are within "
        "a point of each other, and of a logistic regression.",
        "measured": (
            "0-4",
            "I2M2 0.897 ± 0.010, intra 0.891 ± 0.009, inter 0.888 ± 0.011; logistic "
            "regression 0.899 ± 0.013",
        ),
    },
}
#: The mfeat views of ``sk-i2m2 demo --data mfeat`` (and of its measured figures).
DEMO_MFEAT_VIEWS = ("fou", "zer", "mor")
MODELS = (
    ("both", "I2M2 (intra x inter)"),
    ("intra", "intra (per-modality experts only)"),
    ("inter", "inter (fused expert only)"),
)


def demo(data=("synthetic", "kspace"), views=DEMO_MFEAT_VIEWS, random_state=0, max_epochs=None):
    """Fit I2M2 and its intra and inter baselines on demo data sets; print test accuracies.

    Parameters
    ----------
    data : sequence of {"synthetic", "kspace", "mfeat"}, default=("synthetic", "kspace")
        Data sets, in order (see :data:`DEMO_DATA`).
    views : sequence of str, default=("fou", "zer", "mor")
        mfeat views used as modalities (``data`` with ``"mfeat"`` only).
    random_state : int, default=0
        Seed of the synthetic data, of the train/test split and of the models.
    max_epochs : int or None, default=None
        Epochs per stage; ``None`` keeps the estimator's default.

    Notes
    -----
    One estimator with ``warm_start=True`` per data set: the baselines keep
    the experts the I2M2 fit trained in stage 1, so the intra model runs only
    its stage 2 and the inter model only its calibration.
    """
    from sklearn.model_selection import train_test_split

    from . import I2M2Classifier

    print(
        "I2M2 against its two baselines, each an I2M2Classifier(random_state="
        f"{random_state}) fitted on\na stratified 70 % of the rows and scored on the other "
        "30 % (test accuracy):\n"
        "  I2M2   the product of one expert per modality and one on all modalities fused\n"
        "  intra  the per-modality experts only: blind to what lies across modalities\n"
        "  inter  the fused expert only: may miss part of what each modality says alone\n"
        "The baselines reuse the experts I2M2 trains in its first stage (warm_start=True).",
        flush=True,
    )
    params = {} if max_epochs is None else {"max_epochs": max_epochs}
    for number, name in enumerate(data, start=1):
        spec = DEMO_DATA[name]
        X, y = _demo_data(name, views, random_state)
        title = spec["title"] if name != "mfeat" else f"{spec['title']}, views {' '.join(views)}"
        print(f"\n[{number}/{len(data)}] {title}\n{_indent(spec['about'])}", flush=True)
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=0.3, stratify=y, random_state=random_state
        )
        clf = I2M2Classifier(warm_start=True, random_state=random_state, **params)
        width = max(len(label) for _, label in MODELS) + 2
        for dependencies, label in MODELS:
            # The line starts before the fit, so a slow fit shows what runs.
            print(f"    {label:<{width}}", end="", flush=True)
            start = time.perf_counter()
            clf.set_params(dependencies=dependencies).fit(X_train, y_train)
            seconds = time.perf_counter() - start
            print(f"{clf.score(X_test, y_test):.3f}  (fitted in {seconds:.1f} s)", flush=True)
            if dependencies == "both":
                experts = clf.expert_proba(X_test)
        experts_line = ", ".join(
            f"{expert} {(proba.argmax(1) == y_test).mean():.3f}"
            for expert, proba in experts.items()
        )
        print(_indent(f"each expert of the I2M2 model alone: {experts_line}"))
        print(_indent(f"What it means: {spec['meaning']}"))
        seeds, accuracy = spec["measured"]
        if name != "mfeat" or tuple(views) == DEMO_MFEAT_VIEWS:  # measured on these views
            print(_indent(f"Over seeds {seeds} (benchmarks/demo_regimes.py): {accuracy}."))
    closing = (
        f"The accuracies above are one run (seed {random_state}): 'sk-i2m2 demo "
        "--random-state SEED' runs another"
    )
    if "mfeat" not in data:
        closing += (
            ", 'sk-i2m2 demo --data mfeat' the three models on real digit features, where "
            "they are close"
        )
    print("\n" + textwrap.fill(closing + "; 'sk-i2m2 demo --help' lists the options.", width=88))


def _indent(text):
    """``text`` wrapped to 88 columns, indented under a data set's title."""
    return textwrap.fill(text, width=88, initial_indent="    ", subsequent_indent="    ")


def _demo_data(name, views, random_state):
    """``(X, y)`` of demo data set ``name``."""
    from .datasets import load_kspace_digits, load_mfeat, make_multimodal_classification

    if name == "synthetic":
        return make_multimodal_classification(
            1000, intra_strength=0.5, inter_strength=1.5, random_state=random_state
        )
    if name == "kspace":
        return load_kspace_digits("sklearn")
    return load_mfeat(list(views))


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
        help="train I2M2 and its intra and inter baselines on demo data",
        description="Train I2M2, then its intra and inter baselines, on data sets chosen to "
        "show when modelling both kinds of dependency pays, and print their test accuracies "
        "with what they mean. Takes about 15 s of CPU time.",
        epilog="Data sets: synthetic = two modalities whose label lies mostly in an XOR "
        "across them (make_multimodal_classification); kspace = magnitude and phase of the "
        "2-D FFT of 8x8 digit images (load_kspace_digits); mfeat = views of the UCI Multiple "
        "Features digits (load_mfeat), the --views.",
    )
    demo_parser.add_argument(
        "--data",
        nargs="+",
        default=["synthetic", "kspace"],
        choices=list(DEMO_DATA),
        metavar="DATA",
        help=f"data sets to run, in order, from {', '.join(DEMO_DATA)} (default: synthetic kspace)",
    )
    demo_parser.add_argument(
        "--views",
        nargs="+",
        default=list(DEMO_MFEAT_VIEWS),
        choices=list(MFEAT_VIEWS),
        metavar="VIEW",
        help=f"mfeat views to use as modalities with --data mfeat, from "
        f"{', '.join(MFEAT_VIEWS)} (default: fou zer mor)",
    )
    demo_parser.add_argument(
        "--random-state",
        type=int,
        default=0,
        metavar="SEED",
        help="seed of the synthetic data, the train/test split and the models (default: 0)",
    )
    demo_parser.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        metavar="N",
        help="epochs per training stage (default: the estimator's, 100, with early stopping); "
        "fewer run faster and score lower",
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
        if args.max_epochs is not None and args.max_epochs < 1:
            demo_parser.error(f"--max-epochs must be at least 1, got {args.max_epochs}")
        demo(tuple(args.data), tuple(args.views), args.random_state, args.max_epochs)
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
