"""Accuracy of single-modality experts, intra, inter and I2M2 on offline data sets.

Runs the benchmark of ``benchmarks/comparison.py`` (also reachable as ``sk-i2m2
benchmark`` in a source checkout): it writes its section of ``RESULTS.md`` and
``compare.png`` next to this file, whatever the working directory.

Usage, from the repository root::

    python -m benchmarks.compare --quick      # a few minutes on 2 CPU cores
    python -m benchmarks.compare              # all data sets, 5 seeds
    python -m benchmarks.compare --help       # data sets, seeds, epochs, parallel jobs
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import script_command, write_results
from benchmarks.comparison import (
    DATASETS,
    EXPERT_PREFIX,
    QUICK,
    check_claims,
    results_section,
    run_benchmark,
    summarize,
)

__all__ = ["plot_results", "main", "add_arguments", "run_from_args"]


def _require_matplotlib():
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(
            "The benchmark's bar chart needs matplotlib: pip install 'sk-i2m2[plot]' "
            "(or pass --no-plot)."
        ) from error
    return matplotlib


def plot_results(summary, path):
    """Bar chart of test accuracy (mean ± std) per model, one panel per data set.

    Parameters
    ----------
    summary : pandas.DataFrame
        Output of :func:`summarize`.
    path : str or Path
        PNG file to write.
    """
    matplotlib = _require_matplotlib()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary.index.get_level_values(0).unique())
    n_cols = min(4, len(names))
    n_rows = -(-len(names) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 2.9 * n_rows), squeeze=False)
    colors = {
        "intra": "#4c72b0",
        "inter (concat)": "#dd8452",
        "inter (lrtf)": "#c44e52",
        "I2M2": "#55a868",
    }
    for ax, name in zip(axes.flat, names):
        part = summary.loc[name]
        models = list(part.index)
        ax.bar(
            range(len(models)),
            part["accuracy_mean"],
            yerr=part["accuracy_std"],
            color=[colors.get(m, "#a0a0a0") for m in models],
            capsize=2,
        )
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(
            [m.replace(EXPERT_PREFIX, "") for m in models], rotation=60, ha="right", fontsize=7
        )
        low = max(0.0, float((part["accuracy_mean"] - part["accuracy_std"]).min()) - 0.05)
        ax.set_ylim(low, 1.0)
        ax.set_title(DATASETS[name].title, fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("test accuracy (mean ± std)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(
    *,
    quick=False,
    datasets=None,
    seeds=None,
    max_epochs=None,
    output_dir="benchmarks",
    plot=True,
    n_jobs=1,
    command="sk-i2m2 benchmark",
    verbose=1,
):
    """Run the benchmark and write ``RESULTS.md`` (and ``compare.png``) to ``output_dir``.

    Parameters
    ----------
    quick : bool, default=False
        Use :data:`QUICK` for the settings not given.
    datasets, seeds, max_epochs : optional
        See :func:`run_benchmark`; ``None`` takes the full (or quick) setting.
    output_dir : str or Path, default="benchmarks"
        Folder of ``RESULTS.md`` and ``compare.png``.
    plot : bool, default=True
        Write the bar chart (needs matplotlib).
    n_jobs : int, default=1
        Parallel fits.
    command : str
        The command line recorded in RESULTS.md.
    verbose : int, default=1
        1 prints progress and the claims.

    Returns
    -------
    summary : pandas.DataFrame
        Output of :func:`summarize`.
    """
    if plot:
        _require_matplotlib()  # fail before training, not after
    defaults = QUICK if quick else {"datasets": None, "seeds": 5, "max_epochs": None}
    datasets = defaults["datasets"] if datasets is None else datasets
    seeds = defaults["seeds"] if seeds is None else seeds
    max_epochs = defaults["max_epochs"] if max_epochs is None else max_epochs
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)

    start = time.perf_counter()
    results = run_benchmark(datasets, seed_list, max_epochs, n_jobs=n_jobs, verbose=verbose)
    summary = summarize(results)
    checks = check_claims(summary)
    elapsed = time.perf_counter() - start

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plot_name = None
    if plot:
        plot_name = "compare.png"
        plot_results(summary, output_dir / plot_name)
    section = results_section(
        summary,
        checks,
        command=command,
        seeds=seed_list,
        max_epochs=max_epochs,
        plot_name=plot_name,
        elapsed=elapsed,
    )
    write_results(section, output_dir / "RESULTS.md", name="compare")
    if verbose:
        for c in checks:
            status = "holds" if c["holds"] else "DOES NOT HOLD"
            print(f"{DATASETS[c['dataset']].title}: {c['claim']}: {status} ({c['evidence']})")
        print(f"Wrote {output_dir / 'RESULTS.md'} in {elapsed / 60:.1f} min.")
    return summary


def add_arguments(parser, output_dir="benchmarks"):
    """Add the benchmark's command-line options to an ``argparse`` parser."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer data sets, seeds and epochs (a few minutes on 2 CPU cores)",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=None,
        choices=list(DATASETS),
        metavar="NAME",
        help=f"data sets to run (default: all of {', '.join(DATASETS)})",
    )
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (default 5)")
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="override I2M2Classifier's max_epochs"
    )
    parser.add_argument("--n-jobs", type=int, default=1, help="fits run in parallel processes")
    parser.add_argument(
        "--output-dir",
        default=str(output_dir),
        help=f"folder of RESULTS.md and compare.png (default: {output_dir})",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG bar chart")
    return parser


def run_from_args(args, command):
    """Run :func:`main` with options parsed by a parser from :func:`add_arguments`."""
    return main(
        quick=args.quick,
        datasets=args.datasets,
        seeds=args.seeds,
        max_epochs=args.max_epochs,
        output_dir=args.output_dir,
        plot=not args.no_plot,
        n_jobs=args.n_jobs,
        command=command,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser, output_dir=Path(__file__).resolve().parent)
    run_from_args(parser.parse_args(), script_command("compare"))
