#!/usr/bin/env bash
# On a GPU machine: the runner's loop overhead and batch-building cost at the paper's sizes.
# Needs the MNIST IDX files in .device-data/mnist; CIFAR-10 is written in the real pickle format
# (random pixels, real shapes and file layout) so noise-padded CIFAR-10 runs at its true size.
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD/.gpu_site:$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
rm -rf /tmp/cifar; python3 -c "from pathlib import Path; from tests.test_data import write_cifar10; \
write_cifar10(Path('/tmp/cifar'), per_batch=2000)"
timeout 400 python3 scripts/bench.py --device cuda --loop-steps 100 --json "$OUT/loop.json" \
  --loop "dataset=mnist model=gated_arnn data_dir=.device-data/mnist dataset.test_limit=2000 optimizer.lr=0.01" \
  --loop "dataset=mnist model=lstm data_dir=.device-data/mnist dataset.test_limit=2000" \
  --loop "dataset=noise_cifar10 model=gated_arnn data_dir=/tmp/cifar optimizer.lr=0.01" 2>&1 | tee "$OUT/loop.txt"
