#!/usr/bin/env bash
# The sweeps that chose conf/preset/*.yaml (2 CPU cores; README, "Presets").
# Successive halving over 4 grid points per (model, task): 50 -> 100 -> 200 steps, ranked by the
# validation accuracy (5,000 training images held out: the sweeper's default metric); the
# collector reports the chosen point's test accuracy on the first 1000 test images. MNIST: the
# canonical files; CIFAR-10: the approximate JPEG copy
# (python ../shared/data/cifar10-jpeg/make_cifar10.py data/cifar_jpeg), never a CIFAR-10 result.
#   bash docs/presets/sweep.sh [pair ...]    pairs: <model>_<dataset>, default all below
# The tables go under outputs/ ($OUT/docs); DOCS=docs/presets writes the committed ones.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
MNIST=${MNIST:-../shared/data/mnist}
CIFAR=${CIFAR:-data/cifar_jpeg}
OUT=${OUT:-outputs/multirun/presets}
SEEDS=${SEEDS:-0,1}  # a grid point is ranked by its mean over these seeds
COMMON=(hydra/sweeper=halving hydra.sweeper.min_steps=50 hydra.sweeper.eta=2 train.steps=200
        train.eval_every=100000 train.log_every=25 train.checkpoint_every=100000
        dataset.test_limit=1000 "seed=$SEEDS")
# Antisymmetric models: eps=0.01, gamma=0.01 keep rho^T near 1 at T=784..1024 (README,
# "Stability report"); the sweep chooses the optimiser and learning rate.
ANTISYMMETRIC=(model.eps=0.01 model.gamma=0.01 model.sigma_w=1 optimizer=sgd,adagrad
               optimizer.lr=0.1,0.3)
LSTM=(model.sigma_w=1 optimizer=sgd,adagrad optimizer.lr=0.1,0.3)
# The ablation has no gamma: sigma_w=0 starts it at rho=1, sigma_w=1 at rho^T ~ e^(eps T).
# Rung 0 only (train.steps=50 after COMMON): the time left for it on 2 cores.
ABLATION=(model.eps=0.01 model.sigma_w=0,1 optimizer=sgd,adagrad optimizer.lr=0.1 train.steps=50)

sweep() {  # sweep <model> <dataset> <data_dir> <grid...>
  local model=$1 dataset=$2 data=$3; shift 3
  "$PY" train.py -m model="$model" dataset="$dataset" data_dir="$data" "${COMMON[@]}" "$@" \
    hydra.sweep.dir="$OUT/${model}_${dataset}"
  "$PY" scripts/collect_results.py "$OUT/${model}_${dataset}" \
    --out "${DOCS:-$OUT/docs}/${model}_${dataset}"
}

PAIRS=("$@")
# The pairs swept for conf/preset; the others take a swept pair's values (docs/presets/checks.sh).
[ ${#PAIRS[@]} -gt 0 ] || PAIRS=(gated_arnn_mnist arnn_cifar10 arnn_mnist lstm_mnist
                                  gated_arnn_cifar10 ablation_cifar10)
for pair in "${PAIRS[@]}"; do
  case $pair in
    arnn_mnist|gated_arnn_mnist) sweep "${pair%_mnist}" mnist "$MNIST" "${ANTISYMMETRIC[@]}" ;;
    arnn_cifar10|gated_arnn_cifar10) sweep "${pair%_cifar10}" cifar10 "$CIFAR" "${ANTISYMMETRIC[@]}" ;;
    lstm_mnist) sweep lstm mnist "$MNIST" "${LSTM[@]}" ;;
    lstm_cifar10) sweep lstm cifar10 "$CIFAR" "${LSTM[@]}" ;;
    ablation_mnist) sweep ablation mnist "$MNIST" "${ABLATION[@]}" ;;
    ablation_cifar10) sweep ablation cifar10 "$CIFAR" "${ABLATION[@]}" ;;
    *) echo "unknown pair $pair" >&2; exit 2 ;;
  esac
done
