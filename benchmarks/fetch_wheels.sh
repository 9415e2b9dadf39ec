#!/usr/bin/env bash
# Download dependencies as wheels into .whl/, so that gpu_check.sh can install
# them on a GPU machine without network access.
# Usage: bash benchmarks/fetch_wheels.sh [python-version [package ...]]
# Default: Python 3.12 and skorch alone, for GPU images that already hold torch,
# numpy, scipy, scikit-learn, pandas, safetensors and pytest. Name more packages
# (e.g. the list in pyproject.toml) for a bare image.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-3.12}
shift || true
packages=${*:-skorch}
mkdir -p .whl
exclude=$(git rev-parse --git-path info/exclude)  # .git is a file in a worktree
mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
for pkg in $packages; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl "$pkg"
done
ls .whl
