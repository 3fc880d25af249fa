#!/usr/bin/env bash
# The offline presets re-chosen on the validation split (README, "Presets"): successive halving
# ranked by val_accuracy (the sweeper's default) over optimizer {sgd, adagrad} x lr {0.1, 0.3},
# two seeds per grid point (a point is ranked by its mean and promoted with both seeds), eta 2.
# The test split is read only by the collector, to report the chosen point.
#   bash docs/presets/validation.sh [digits|noise_digits ...]     (from the repository root)
# The tables go under outputs/ ($OUT/docs); DOCS=docs/presets/validation writes the committed ones.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/presets_val}
GRID=(optimizer=sgd,adagrad optimizer.lr=0.1,0.3 seed=0,1 hydra/sweeper=halving
      hydra.sweeper.eta=2)
tasks=("$@")
[ ${#tasks[@]} -gt 0 ] || tasks=(digits noise_digits)
for task in "${tasks[@]}"; do
  case $task in
    digits) budget=(hydra.sweeper.min_steps=500 train.steps=2000 train.eval_every=500) ;;
    noise_digits) budget=(hydra.sweeper.min_steps=200 train.steps=800 train.eval_every=200) ;;
    *) echo "unknown task $task" >&2; exit 2 ;;
  esac
  for model in lstm arnn gated_arnn ablation; do
    "$PY" train.py -m "model=$model" "dataset=$task" "${GRID[@]}" "${budget[@]}" \
      "hydra.sweep.dir=$OUT/$task/$model"
  done
  "$PY" scripts/collect_results.py "$OUT/$task"/* --out "${DOCS:-$OUT/docs}/$task"
done
