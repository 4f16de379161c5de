#!/bin/bash
# Session 15, device call 1 (after seven refused starts; carry .wheels), from
# the repository root, 570 s at most:
# (1) #22, alone on the GPU: the long forward pass's curve, 4k…1M tokens, 110m HoPE (random
#     weights): each length's time, peak memory and cuDNN's causal-attention bound;
# (2) side by side: #20, the default test suite on the GPU host (verbose, JUnit report); #22, the
#     shipped HoPE and RoPE demo releases evaluated at 1,048,576 tokens (8,192 x L) through the
#     README's evaluate command, on the machine's installed Python sources, in bfloat16, and the long
#     pass against the ordinary one at 65,536 tokens (110m HoPE; numerics only, beside the suite);
# (3) in the time left, alone again: the same curve for 340m (rows are written as each length ends).
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | grep -v WARNING | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit --format=csv,noheader
L=4096,8192,16384,32768,65536,131072,262144,524288,1048576
curve() {  # SIZE TIMEOUT_S
  (cd benchmarks && timeout $2 python3 long_context.py --size $1 --encoder hope --lengths $L \
    --out $OUT/long_$1.jsonl 2>&1 | grep "^{" | cut -c1-420)
  echo "== $1 curve ended at ${SECONDS} s"
}
curve 110m 160
W=/tmp/demo; mkdir -p $W
one_million() {  # ENCODER TIMEOUT_S
  python3 -c "from hope_jax.interop import run_from_release as r; r('hope_jax/assets/demo/$1', '$W/$1')"
  local start=$SECONDS
  XLA_PYTHON_CLIENT_PREALLOCATE=false timeout $2 python3 -m hope_jax evaluate --config=configs/demo.py:$1 --workdir=$W/$1 \
    --config.data.source=source_tree --config.data.path=sysconfig:purelib --config.data.cache_dir=/tmp/c-tree \
    --config.eval.split=train --config.model.dtype=bfloat16 --config.eval.perplexity.lengths="(8192,)" \
    --config.eval.perplexity.max_windows=1 --config.eval.output_dir=eval_1m > $W/$1-1m.log 2>&1
  echo "$1 1M exit $? after $((SECONDS - start)) s" >> $W/1m.txt
}
(one_million hope 200; one_million rope 120) &
(cd benchmarks && XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 300 python3 long_context.py --size 110m --encoder hope \
  --lengths 4096 --check_length 65536 --out $OUT/check_110m.jsonl > $W/check_110m.log 2>&1) &
XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_PLATFORMS=cuda,cpu timeout $((490 - SECONDS)) python3 -m pytest \
  -o addopts="-m 'not slow'" -v -n 12 -p no:cacheprovider --durations=20 -rfE --junitxml=$OUT/junit.xml > $OUT/pytest.txt 2>&1
echo "pytest exit $? at ${SECONDS} s"; grep -E " FAILED| ERROR|passed|failed" $OUT/pytest.txt | tail -20
wait; echo "== side jobs ended at ${SECONDS} s"
cut -c1-700 $OUT/check_110m.jsonl; cat $W/1m.txt; grep -h "perplexity @\|Error\|peak" $W/*-1m.log | tail -n 6
tar -czf $OUT/runs.tgz -C $W --exclude=checkpoints . /tmp/c-tree/*/manifest.json 2>/dev/null
[ $SECONDS -lt 500 ] && curve 340m $((565 - SECONDS))
echo "== done at ${SECONDS} s"
