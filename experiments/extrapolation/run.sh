#!/usr/bin/env bash
# Trains and evaluates extrapolation variants, in the order given (from the repository root):
#   experiments/extrapolation/run.sh OUT ITEM ...      (extra flags for every command in $EXTRA;
#                                                      $CONFIG: another protocol's config file)
# ITEM is  VARIANT[,seed=N]            train, then the full evaluation suite,
#          train:VARIANT[,seed=N]      train only, or
#          VARIANT[,seed=N]+OPTIONS    an evaluation of that (already trained) run with options,
#                                      e.g. hope+scaling=yarn, rope,seed=1+evals=perplexity+passkey
# Runs go to OUT/runs/<variant>[_seed-N]; wall times (seconds) to OUT/timings.tsv.
set -euo pipefail
out=$1; shift
config=${CONFIG:-configs/experiments/extrapolation.py}  # the protocol's config file
python=${PYTHON:-python3}
mkdir -p "$out/runs"
timed() {  # timed LABEL COMMAND...
  local start
  start=$(date +%s)
  "${@:2}"
  printf '%s\t%s\n' "$1" "$(( $(date +%s) - start ))" >> "$out/timings.tsv"
}
for item in "$@"; do
  train_only=0
  if [[ "$item" == train:* ]]; then train_only=1; item=${item#train:}; fi
  run=${item%%+*}
  wd="$out/runs/$(echo "$run" | tr ',=' '_-')"
  if [[ "$item" == *+* ]]; then
    spec="$run,${item#*+}"
    timed "evaluate $spec" "$python" -m hope_jax evaluate --config=$config:$spec --workdir="$wd" --quiet ${EXTRA:-}
  else
    timed "train $run" "$python" -m hope_jax train --config=$config:$run --workdir="$wd" --quiet ${EXTRA:-}
    [[ $train_only == 1 ]] && continue
    timed "evaluate $run" "$python" -m hope_jax evaluate --config=$config:$run --workdir="$wd" --quiet ${EXTRA:-}
  fi
done
