#!/usr/bin/env bash
# One call on a lent GPU: the recurrence tests compiled for the GPU, the side-by-side benchmark
# at the paper's shapes, and a sweep of the triton backend's launch variants.
# Results go to $OUT (default ./gpu_out). Needs PyTorch and Triton there; hydra-core/omegaconf
# (for the tests' conftest) are taken from ./.gpu_site when present.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD/.gpu_site:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
  | tee -a "$OUT/gpu.txt"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_recurrence.py 2>&1 \
  | tail -15 | tee "$OUT/tests.txt"
[ "${SKIP_BENCH:-0}" = 1 ] || timeout 200 python3 scripts/bench.py --device cuda --json "$OUT/bench.json" \
  --markdown "$OUT/bench.md" 2>&1 | tee "$OUT/bench.txt"
[ "${SKIP_TUNE:-0}" = 1 ] || timeout "${TUNE_TIMEOUT:-200}" python3 scripts/bench.py \
  --device cuda --tune --repeat 10 --json "$OUT/tune.json" 2>&1 | tee "$OUT/tune.txt"
