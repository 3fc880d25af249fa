#!/usr/bin/env bash
# On a GPU machine: the runner's loop overhead and batch-building cost at the paper's sizes.
# Needs the MNIST IDX files in .device-data/mnist; CIFAR-10 is written in the real pickle format
# (random pixels, real shapes and file layout) so noise-padded CIFAR-10 runs at its true size.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD/.gpu_site:$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
rm -rf /tmp/cifar; mkdir -p /tmp/cifar/cifar-10-batches-py; python3 - <<'PY'
import pickle
import numpy as np
rng = np.random.default_rng(0)
for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
    batch = {b"labels": rng.integers(0, 10, 2000).tolist(),
             b"data": rng.integers(0, 256, (2000, 3072), dtype=np.uint8)}
    with open(f"/tmp/cifar/cifar-10-batches-py/{name}", "wb") as f:
        pickle.dump(batch, f)
PY
timeout 400 python3 scripts/bench.py --device cuda --loop-steps 100 --json "$OUT/loop.json" \
  --loop "dataset=mnist model=gated_arnn data_dir=.device-data/mnist dataset.test_limit=2000 optimizer.lr=0.01" \
  --loop "dataset=mnist model=lstm data_dir=.device-data/mnist dataset.test_limit=2000" \
  --loop "dataset=noise_cifar10 model=gated_arnn data_dir=/tmp/cifar optimizer.lr=0.01" 2>&1 | tee "$OUT/loop.txt"
