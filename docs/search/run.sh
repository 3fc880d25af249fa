#!/usr/bin/env bash
# TPE with and without pruning on the same budget (README, "Model-based search"), on 2 CPU cores,
# offline (from the repository root):
#   bash docs/search/run.sh
# Each study: 16 trials, then the same command again (32 in the study), over the Appendix C
# values for the default model (gated_arnn) on the digits, 800 steps a trial, ranked by the best
# validation accuracy. The summary line of each command goes to docs/search/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/search_compare}
DOCS=${DOCS:-$OUT/docs}  # DOCS=docs/search: the committed tables
: > "$DOCS/summary.txt"
for pruner in hyperband none; do
  for round in 1 2; do
    start=$SECONDS
    log="$OUT/$pruner.$round.log"
    mkdir -p "$OUT"
    "$PY" train.py -m hydra/sweeper=optuna +hparams_search=appendix_c hydra.sweeper.n_trials=16 \
      "hydra.sweeper.pruner=$pruner" train.steps=800 "hydra.sweep.dir=$OUT/$pruner" > "$log" 2>&1
    echo "$pruner, command $round ($(( SECONDS - start )) s): $(grep -a '^\[optuna\] [0-9]* trials in the study' "$log")" >> "$DOCS/summary.txt"
  done
  "$PY" scripts/collect_results.py "$OUT/$pruner" --out "$DOCS/$pruner" > /dev/null
done
cat "$DOCS/summary.txt"
