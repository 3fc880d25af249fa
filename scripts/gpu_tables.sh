#!/usr/bin/env bash
# The paper's Table 1 (and Table 2 where the real CIFAR-10 is on disk) in one call on one GPU:
# every job, for each seed, side by side, under CUDA MPS when the machine has it.
#
#   bash scripts/gpu_tables.sh [budget seconds]        (default 540)
#
# Table 1: lstm, arnn, gated_arnn on mnist and pmnist; Table 2 (when $CIFAR holds
# cifar-10-batches-py/): lstm, ablation, arnn, gated_arnn on cifar10 and noise_cifar10; seeds
# $SEEDS; each pair's preset at the paper's protocol. Every job is its own `python train.py`
# in $OUT/<table>/<model>_<dataset>_s<seed>/. A job that would overrun the budget is sent
# SIGTERM: it checkpoints at its next step and records `interrupted`; the same command continues
# it (on another machine too, given $OUT back). At the end the collector writes the tables into
# $OUT/<table>/results.md, and with $PACK set, two archives small enough to copy back:
# $PACK/tables.tgz (records, tables, logs, TensorBoard events) and $PACK/checkpoints.tgz (the
# last.pt of the jobs still to finish).
#
# Environment: MNIST (folder with the MNIST files, default data), CIFAR (optional), OUT (default
# outputs/gpu_tables), SEEDS (default "0 1 2"), PY (default python), PACK (optional),
# EXTRA (more train.py overrides, space-separated: the tests' dry run shrinks the jobs with it),
# MARGIN (seconds kept for the checkpoints and the collector, default 45).
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${1:-540}
[[ $budget =~ ^[0-9]+$ ]] || { echo "error: budget $budget is not a number of seconds" >&2; exit 2; }
PY=${PY:-python}
MNIST=${MNIST:-data}
OUT=${OUT:-outputs/gpu_tables}
SEEDS=${SEEDS:-0 1 2}
MARGIN=${MARGIN:-45}
read -r -a extra <<< "${EXTRA:-}"
start=$SECONDS
mkdir -p "$OUT"

mps=0
stop_mps() {
  if [ "$mps" = 1 ]; then echo quit | nvidia-cuda-mps-control >/dev/null 2>&1 || true; fi
}
trap stop_mps EXIT
if command -v nvidia-cuda-mps-control >/dev/null 2>&1; then
  export CUDA_MPS_PIPE_DIRECTORY="$PWD/$OUT/.mps/pipe" CUDA_MPS_LOG_DIRECTORY="$PWD/$OUT/.mps/log"
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  if nvidia-cuda-mps-control -d && "$PY" -c \
      "import torch; assert torch.ones(1, device='cuda').add(1).item() == 2" >/dev/null 2>&1; then
    mps=1
    echo "CUDA MPS: started (jobs share the GPU's SMs concurrently)"
  else
    echo quit | nvidia-cuda-mps-control >/dev/null 2>&1 || true
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    echo "CUDA MPS: could not be started or did not answer a CUDA call; the jobs share the GPU without it"
  fi
fi

declare -A tables=([table1]="lstm arnn gated_arnn|mnist pmnist|$MNIST")
if [ -n "${CIFAR:-}" ] && [ -d "$CIFAR/cifar-10-batches-py" ]; then
  tables[table2]="lstm ablation arnn gated_arnn|cifar10 noise_cifar10|$CIFAR"
fi
pids=()
for table in "${!tables[@]}"; do
  IFS='|' read -r models datasets data <<< "${tables[$table]}"
  for model in $models; do
    for dataset in $datasets; do
      for seed in $SEEDS; do
        job="$OUT/$table/${model}_${dataset}_s$seed"
        mkdir -p "$job"
        "$PY" train.py "model=$model" "dataset=$dataset" "seed=$seed" "data_dir=$data" \
          train.threads=1 "hydra.run.dir=$job" "${extra[@]}" > "$job/console.log" 2>&1 &
        pids+=($!)
      done
    done
  done
done
echo "${#pids[@]} jobs started side by side; budget ${budget} s"

# Stop what would overrun: SIGTERM leaves MARGIN seconds to checkpoint and collect.
left=$(( budget - MARGIN - (SECONDS - start) ))
deadline=$(( SECONDS + (left > 0 ? left : 0) ))
while [ $SECONDS -lt $deadline ]; do
  running=0
  for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
  [ $running = 1 ] || break
  sleep 1
done
stopped=0
for pid in "${pids[@]}"; do
  if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null && stopped=$((stopped + 1)); fi
done
[ $stopped = 0 ] || echo "budget: $stopped job(s) sent SIGTERM; the same command continues them"
grace=$(( SECONDS + MARGIN / 2 ))
for pid in "${pids[@]}"; do
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $grace ]; do sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
done
stop_mps
mps=0

for table in "${!tables[@]}"; do
  "$PY" scripts/collect_results.py "$OUT/$table" --out "$OUT/$table" > "$OUT/$table/collect.log" 2>&1 \
    || echo "collector: see $OUT/$table/collect.log"
  sed -n '/^## Table/,/^$/p' "$OUT/$table/results.md" 2>/dev/null || true
done
if [ -n "${PACK:-}" ]; then
  mkdir -p "$PACK"
  tar czf "$PACK/tables.tgz" --exclude='*.pt' --exclude='.mps' -C "$(dirname "$OUT")" "$(basename "$OUT")"
  unfinished=$(grep -L '"status": "completed"' "$OUT"/*/*/results.json 2>/dev/null \
                 | xargs -r -n1 dirname || true)
  tar czf "$PACK/checkpoints.tgz" --files-from <(for d in $unfinished; do
    [ -f "$d/checkpoints/last.pt" ] && echo "$d/checkpoints/last.pt"; done)
  echo "packed $PACK/tables.tgz and $PACK/checkpoints.tgz"
fi
echo "results in $OUT ($(( SECONDS - start )) s)"
