#!/usr/bin/env bash
# Download the project's dependencies (not torch) as wheels into .whl/, so that
# gpu_check.sh can install them on a GPU machine without network access.
# Usage: bash benchmarks/fetch_wheels.sh [python-version, default 3.12]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-3.12}
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
for pkg in skorch scikit-learn scipy joblib threadpoolctl tqdm tabulate safetensors \
           pandas python-dateutil six tzdata pytest pluggy iniconfig packaging hypothesis \
           sortedcontainers attrs numpy; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl "$pkg"
done
ls .whl
