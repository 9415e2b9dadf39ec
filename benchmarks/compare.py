"""Accuracy of single-modality experts, intra, inter and I2M2 on offline data sets.

Runs ``comparison.py`` (also reachable as ``sk-i2m2 benchmark`` in a source checkout): it writes
its section of ``RESULTS.md`` and ``compare.png`` next to this file, whatever
the working directory.

Usage::

    python benchmarks/compare.py --quick      # a few minutes on 2 CPU cores
    python benchmarks/compare.py              # all data sets, 5 seeds
    python benchmarks/compare.py --help       # data sets, seeds, epochs, parallel jobs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import comparison

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    comparison.add_arguments(parser, output_dir=Path(__file__).resolve().parent)
    args = parser.parse_args()
    comparison.run_from_args(args, " ".join(["python benchmarks/compare.py", *sys.argv[1:]]))
