#!/usr/bin/env bash
# One run on a CUDA machine: the CUDA tests, then the speed benchmark (CPU case,
# AV-MNIST-shaped case, accuracy at the GPU batch size vs batch 40).
# Works offline: dependencies the machine lacks come from wheels in .whl/
# (make them with benchmarks/fetch_wheels.sh on a machine with network access).
# Arguments go to speed.py (e.g. --no-accuracy skips the 2-minute accuracy check).
# Finishes within about 6 minutes on an H100. Output also goes to $OUT/gpu_check.log
# when OUT is set.
set -uo pipefail
cd "$(dirname "$0")/.."
log=${OUT:-/tmp}/gpu_check.log
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
  if ! python3 -c "import skorch, sklearn, pandas, safetensors" 2>/dev/null; then
    if [ -d .whl ]; then
      python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
      export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
    else
      echo "missing dependencies and no .whl/ folder: run benchmarks/fetch_wheels.sh first"; exit 1
    fi
  fi
  export PYTHONPATH=$PWD:${PYTHONPATH:-}
  export PYTHONUNBUFFERED=1
  echo "== CUDA tests"
  timeout 180 python3 -m pytest -q -p no:cacheprovider -k "cuda" $(grep -l requires_cuda tests/test_*.py)
  echo "== speed benchmark"
  timeout 300 python3 benchmarks/speed.py "$@"
} 2>&1 | tee "$log"
