#!/usr/bin/env bash
# The short CPU checks of the presets (docs/reproduction.md, README "Presets"): every pair the
# sweeps of sweep.sh did not tune runs its preset for 50 steps, as README's table commands with
# train.steps=50; then the acceptance runs of issue 10.
#   bash docs/presets/checks.sh
# The tables go under outputs/ ($OUT/docs); DOCS=docs/presets/checks writes the committed ones.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
MNIST=${MNIST:-../shared/data/mnist}
CIFAR=${CIFAR:-data/cifar_jpeg}   # the approximate JPEG copy: never a CIFAR-10 result
SHORT=(train.steps=50 train.log_every=25 dataset.test_limit=1000)

"$PY" train.py -m model=lstm,arnn,gated_arnn dataset=pmnist data_dir="$MNIST" "${SHORT[@]}" \
  hydra.sweep.dir=outputs/multirun/checks/pmnist
# gated_arnn with MNIST's Adagrad 0.3 stayed at chance on pMNIST at 50 steps: try 0.1 (the preset)
"$PY" train.py model=gated_arnn dataset=pmnist data_dir="$MNIST" optimizer.lr=0.1 "${SHORT[@]}" \
  hydra.run.dir=outputs/multirun/checks/pmnist_lr/gated_arnn_adagrad_0.1
"$PY" train.py -m model=lstm,arnn,gated_arnn dataset=noise_cifar10 data_dir="$CIFAR" \
  "${SHORT[@]}" hydra.sweep.dir=outputs/multirun/checks/noise_cifar10
"$PY" train.py model=lstm dataset=cifar10 data_dir="$CIFAR" "${SHORT[@]}" \
  hydra.run.dir=outputs/multirun/checks/cifar10/lstm
"$PY" train.py -m model=ablation dataset=mnist,pmnist data_dir="$MNIST" "${SHORT[@]}" \
  hydra.sweep.dir=outputs/multirun/checks/ablation_mnist
"$PY" train.py model=ablation dataset=noise_cifar10 data_dir="$CIFAR" "${SHORT[@]}" \
  hydra.run.dir=outputs/multirun/checks/noise_cifar10/ablation

# Acceptance (issue 10), the commands as a user types them:
"$PY" train.py dataset=mnist data_dir="$MNIST" train.steps=300 dataset.test_limit=2000 \
  hydra.run.dir=outputs/multirun/checks/accept/gated_arnn_mnist
"$PY" train.py model=arnn dataset=cifar10 data_dir="$CIFAR" train.steps=100 \
  dataset.test_limit=1000 hydra.run.dir=outputs/multirun/checks/accept/arnn_cifar10
"$PY" train.py model=gated_arnn dataset=digits optimizer.lr=1e12 train.steps=50 \
  hydra.run.dir=outputs/multirun/checks/accept/lr1e12
"$PY" train.py hydra.run.dir=outputs/multirun/checks/accept/default
"$PY" scripts/collect_results.py outputs/multirun/checks --out "${DOCS:-outputs/multirun/checks/docs}"
