#!/usr/bin/env bash
# One prepared run on a CUDA machine, under 8 minutes on an H100, in five steps:
#   cuda-tests    the CUDA tests (tests/ -k cuda)                                  <= 120 s
#   speed         python -m benchmarks.speed: the CPU MLP case and the AV-MNIST-shaped
#                 case on CUDA (ratio to a hand loop, set-up time apart from the
#                 epochs, joint fine-tune and predict_proba samples/s)             <= 150 s
#   large-batch   python -m benchmarks.large_batch --device cuda (batch 32, 256, 1024;
#                 one seed; lr_schedule constant and auto)                          <= 120 s
#   small-cohort  python -m benchmarks.small_cohort_devices: a 200-row set of
#                 small_cohorts.py fitted with the defaults on the CPU and on CUDA  <= 100 s
#   fold-batching python -m benchmarks.fold_batching --device cuda: one stage-1 step of
#                 the 5 fold models as a loop, with vmap and with grouped layers   <= 90 s
# Each step has its own time limit, and none runs past the total budget
# (GPU_CHECK_BUDGET, 470 s). A step that fails or times out does not stop the
# others; the script lists the failed steps and exits non-zero at the end.
# Every figure goes to benchmarks/RESULTS.md as a new dated section (GPU, torch
# version, commands), and, when OUT is set, the updated RESULTS.md, the section
# alone and the logs go to $OUT (gpu_check.log, gpu_check/).
#
#   bash benchmarks/gpu_check.sh                  # the real run, on a CUDA machine
#   bash benchmarks/gpu_check.sh --cpu-dry-run    # every step on the CPU at toy sizes
#                                                 # (about a minute on 2 cores)
#
# The dry run runs the same commands with size flags added, hides any GPU
# (CUDA_VISIBLE_DEVICES=), and writes its section, titled as a dry run, to a
# scratch copy of RESULTS.md in the work folder, never to benchmarks/RESULTS.md:
# run it before spending device time, so that a typo cannot waste it.
# Other arguments are added to speed.py's command line.
#
# Works offline: dependencies the machine lacks come from wheels in .whl/ (make
# them with benchmarks/fetch_wheels.sh on a machine with network access, and
# take .whl/ along; it is ignored by git).
set -uo pipefail
cd "$(dirname "$0")/.."

dry=0
speed_args=()
for arg in "$@"; do
  if [ "$arg" = "--cpu-dry-run" ]; then dry=1; else speed_args+=("$arg"); fi
done
py=${PYTHON:-python3}
stamp=$(date -u +%Y%m%d-%H%M%S)
if [ "$dry" = 1 ]; then
  work=${OUT:-/tmp}/gpu_check_dry_run_$stamp
  export CUDA_VISIBLE_DEVICES=
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
else
  work=${OUT:-/tmp}/gpu_check_$stamp
fi
mkdir -p "$work"
log=${OUT:-/tmp}/gpu_check.log
[ "$dry" = 1 ] && log=$work/gpu_check.log
command="bash benchmarks/gpu_check.sh${*:+ $*}"
budget=${GPU_CHECK_BUDGET:-470}

# run_step NAME LIMIT_S COMMAND...: run with a time limit (cut to what is left
# of the budget), log to $work/NAME.log, record the result in steps.tsv.
run_step() {
  local name=$1 limit=$2
  shift 2
  local left=$((budget - SECONDS - 10))
  [ "$limit" -gt "$left" ] && limit=$left
  echo
  echo "== $name (limit ${limit} s): $*"
  local start=$SECONDS rc
  if [ "$limit" -lt 5 ]; then
    echo "no time left in the ${budget} s budget: skipped"
    rc=200
  else
    timeout -k 10 "$limit" "$@" 2>&1 | tee "$work/$name.log"
    rc=${PIPESTATUS[0]}
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$*" "$rc" "$((SECONDS - start))" >> "$work/steps.tsv"
  [ "$rc" = 0 ] || echo "== $name FAILED (exit $rc)"
}

{
  echo "gpu_check: $command; work folder $work"
  {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null \
      || echo "nvidia-smi: none"
  } | tee "$work/env.log"
  if ! "$py" -c "import skorch, sklearn, pandas, safetensors" 2>/dev/null; then
    if [ -d .whl ]; then
      "$py" -m pip install -q --no-index --no-deps --target "$work/site" .whl/*.whl
      export PYTHONPATH=$work/site:${PYTHONPATH:-}
    else
      echo "missing dependencies and no .whl/ folder: run benchmarks/fetch_wheels.sh first"
      exit 1
    fi
  elif [ "$dry" = 1 ] && [ -d .whl ]; then
    # The dependencies are here; check that the wheels would install all the same.
    "$py" -m pip install -q --no-index --no-deps --target "$work/site" .whl/*.whl \
      && echo "wheels in .whl/ install offline" || echo "WARNING: the wheels in .whl/ do not install"
  fi
  export PYTHONUNBUFFERED=1
  "$py" -c "import torch, skorch; print('versions:', 'CUDA', \
torch.version.cuda, '(available:', str(torch.cuda.is_available()) + '),', 'skorch', \
skorch.__version__)" | tee -a "$work/env.log"

  if [ "$dry" = 1 ]; then
    speed_size=(--device cpu --avmnist --n-samples 200 --epochs 1 --gpu-batch-size 64)
    large_size=(--device cpu --batch-sizes 32 256 --n-samples 300 --max-epochs 2)
    small_size=(--dataset synthetic-mixed-100 --devices cpu cpu --seeds 1)
    fold_size=(--device cpu --sets bc-150 digits-300 --threads 1)
  else
    speed_size=()
    large_size=(--device cuda --batch-sizes 32 256 1024)
    small_size=(--dataset synthetic-mixed-200 --devices cpu cuda --seeds 2)
    fold_size=(--device cuda)
  fi

  # shellcheck disable=SC2046  # one argument per test file
  run_step cuda-tests 120 "$py" -m pytest -q -p no:cacheprovider -k cuda \
    $(grep -l requires_cuda tests/test_*.py)
  # The steps run as modules from the repository root (see benchmarks/__init__.py).
  run_step speed 150 "$py" -m benchmarks.speed --no-conv --no-accuracy \
    ${speed_size[@]+"${speed_size[@]}"} ${speed_args[@]+"${speed_args[@]}"}
  run_step large-batch 120 "$py" -m benchmarks.large_batch --seeds 0 --no-variants \
    "${large_size[@]}" --output "$work/large_batch.md"
  run_step small-cohort 100 "$py" -m benchmarks.small_cohort_devices "${small_size[@]}" \
    --output "$work/small_cohort.md"
  run_step fold-batching 90 "$py" -m benchmarks.fold_batching "${fold_size[@]}" \
    --output "$work/fold_batching.md"

  results=benchmarks/RESULTS.md
  if [ "$dry" = 1 ]; then
    results=$work/RESULTS.md
    cp benchmarks/RESULTS.md "$results"
  fi
  report=(-m benchmarks.gpu_check_report "$work" --output "$results" --command "$command")
  [ "$dry" = 1 ] && report+=(--dry-run)
  echo
  "$py" "${report[@]}" | tee "$work/section.md" || echo "== report FAILED"
  if [ -n "${OUT:-}" ] && [ "$dry" = 0 ]; then
    cp "$results" "$OUT/RESULTS.md"
  fi

  failed=$(awk -F'\t' '$3 != 0 {print $1}' "$work/steps.tsv" | tr '\n' ' ')
  echo
  echo "gpu_check: ${SECONDS} s in all; results in $results; logs in $work"
  if [ -n "$failed" ]; then
    echo "gpu_check: FAILED steps: $failed"
    exit 1
  fi
  echo "gpu_check: every step passed"
} 2>&1 | tee "$log"
exit "${PIPESTATUS[0]}"
