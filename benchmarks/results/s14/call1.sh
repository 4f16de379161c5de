#!/bin/bash
# Session 14, device call 1 (carry .wheels), from the repository root.
# (1) side by side: the demo's models (#24) trained from scratch with configs/demo.py, RoPE and HoPE,
#     for 8,000 steps (seed 0) and for 4,000 steps with seed 1 (the spread of the shipped 4,000-step
#     pair's 1.98x), each evaluated at 1…32 x L and exported as a release; and the default test suite
#     on the GPU host (#20), verbose, with a JUnit report;
# (2) then, in the time left, the 8,000-step HoPE run evaluated at 1,048,576 tokens (#22) through the
#     README's evaluate command on the machine's installed Python sources, in bfloat16.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | grep -v WARNING | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
W=/tmp/demo; mkdir -p $W/release
demo_model() {  # ENCODER STEPS SEED
  local name=$1-$2-s$3
  { XLA_PYTHON_CLIENT_MEM_FRACTION=0.08 python3 -m hope_jax train --config=configs/demo.py:$1 --workdir=$W/$name \
      --config.data.cache_dir=/tmp/c-$name --config.train.steps=$2 --config.train.checkpoint_every=$2 --config.seed=$3 &&
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.08 python3 -m hope_jax evaluate --config=configs/demo.py:$1 --workdir=$W/$name \
      --config.data.cache_dir=/tmp/c-$name &&
    python3 -m hope_jax export --workdir=$W/$name --out=$W/release/$name --format=release
  } > $W/$name.log 2>&1
}
for enc in rope hope; do demo_model $enc 8000 0 & demo_model $enc 4000 1 & done
XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_PLATFORMS=cuda,cpu timeout 480 python3 -m pytest -o addopts="-m 'not slow'" \
  -v -n 11 -p no:cacheprovider --durations=20 -rfE --junitxml=$OUT/junit.xml > $OUT/pytest.txt 2>&1
echo "pytest exit $? at ${SECONDS} s"; grep -E " FAILED| ERROR|passed|failed" $OUT/pytest.txt | tail -25
wait; echo "== demo models done at ${SECONDS} s"
for f in $W/*-s?.log; do echo "-- $f"; grep -h "trained to\|perplexity @\|wrote the release\|Error" $f | tail -n 9; done
tar -cf $OUT/releases_8000_s0.tar -C $W/release rope-8000-s0 hope-8000-s0
tar -cf $OUT/releases_4000_s1.tar -C $W/release rope-4000-s1 hope-4000-s1
start=$SECONDS
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout $((585 - SECONDS)) python3 -m hope_jax evaluate --config=configs/demo.py:hope \
  --workdir=$W/hope-8000-s0 --config.data.source=source_tree --config.data.path=sysconfig:purelib \
  --config.eval.split=train --config.model.dtype=bfloat16 --config.eval.perplexity.lengths="(8192,)" \
  --config.eval.perplexity.max_windows=1 --config.eval.output_dir=eval_1m > $W/hope-1m.log 2>&1
echo "hope 1M exit $? after $((SECONDS - start)) s"; grep "perplexity @\|Error\|peak" $W/hope-1m.log | tail -n 4
tar -czf $OUT/runs.tgz -C $W --exclude=checkpoints --exclude=release .
echo "== done at ${SECONDS} s"
