# Sourced by this session's device calls (from the repository root): installs the wheels the GPU
# image lacks (carried in .wheels) and keeps the corpus's TFDS build, its token cache and JAX's
# compiled programs under the ignored .cache/, which stays on the machine while it is held warm, so
# a later call skips what an earlier one prepared.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | grep -v WARNING | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=$PWD/.cache/jc HOPE_JAX_CACHE=$PWD/.cache/hope_jax TFDS_DATA_DIR=$PWD/.cache/tfds
nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit --format=csv,noheader
# stage LABEL DEADLINE_S COMMAND...: runs COMMAND (a program, or a function exported with
# `export -f`) until DEADLINE_S seconds into the calling script, its output appended to
# $STAGE_LOG, and prints how it ended; with 5 s or less left it is skipped (`timeout 0` = no limit).
stage() {
  local start=$SECONDS
  (($2 - SECONDS > 5)) || { echo "$1: skipped (at ${SECONDS} s)"; return; }
  timeout $(($2 - SECONDS)) bash -c '"$@"' stage "${@:3}" >> "$STAGE_LOG" 2>&1
  echo "$1: exit $? in $((SECONDS - start)) s (at ${SECONDS} s)"
}
