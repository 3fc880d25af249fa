#!/usr/bin/env bash
# The LSTM tuned as the field tunes it (docs/claims.md): TPE over {Adam, RMSprop, SGD with
# momentum, Adagrad}, a log-uniform learning rate in [1e-4, 1] and gradient clipping {none, 1, 5}
# (conf/hparams_search/lstm_baseline.yaml), 24 trials of 2 seeds, Hyperband pruning, ranked on
# the validation split, within the antisymmetric models' budget on this page (800 steps), on the
# noise-padded digits at T = 50 and T = 300. From the repository root:
#   bash docs/claims/lstm_search.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-outputs/claims/lstm_search}
DOCS=${DOCS:-$OUT/docs}  # DOCS=docs/claims/lstm_search: the committed tables
mkdir -p "$DOCS"
: > "$DOCS/summary.txt"
for T in 50 300; do
  start=$SECONDS
  log="$OUT/T$T.log"
  mkdir -p "$OUT"
  "$PY" train.py -m hydra/sweeper=optuna +hparams_search=lstm_baseline dataset=noise_digits \
    "dataset.seq_len=$T" train.steps=800 "hydra.sweep.dir=$OUT/T$T" > "$log" 2>&1
  echo "T = $T ($(( SECONDS - start )) s): $(grep -a '^\[optuna\] [0-9]* trials in the study' "$log")" >> "$DOCS/summary.txt"
  "$PY" scripts/collect_results.py "$OUT/T$T" --out "$DOCS/T$T" > /dev/null
done
cat "$DOCS/summary.txt"
