#!/bin/bash
# Session 13's device call (one call of 10 minutes; carry .wheels): gpu_call_a.sh and the 110m part
# of gpu_call_b.sh in one command, ordered so the timed part runs alone.
# (1) side by side, untimed: the demo's models (configs/demo.py, 4,000 steps, from scratch; each
#     evaluated at 1…32 × L and released in bfloat16: $OUT/demo_releases.tar) and the default test
#     suite on the GPU host (verbose: $OUT/pytest.txt);
# (2) both demo models evaluated at 1,048,576 tokens through the README's evaluate command on the
#     machine's installed Python sources (source_tree, train split);
# (3) alone, timed: the long forward pass's curve for 110m HoPE, 4k…1M, with the comparison against
#     the ordinary pass at 65,536 ($OUT/long_110m.jsonl).
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | grep -v WARNING | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
W=/tmp/demo; mkdir -p $W
for enc in rope hope; do
  { XLA_PYTHON_CLIENT_MEM_FRACTION=0.1 python3 -m hope_jax train --config=configs/demo.py:$enc --workdir=$W/$enc \
      --config.data.cache_dir=/tmp/c-$enc --config.train.steps=4000 --config.train.checkpoint_every=4000 &&
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.1 python3 -m hope_jax evaluate --config=configs/demo.py:$enc --workdir=$W/$enc --config.data.cache_dir=/tmp/c-$enc &&
    python3 -m hope_jax export --workdir=$W/$enc --out=$W/release/$enc --format=release
  } > $W/$enc.log 2>&1 &
done
XLA_PYTHON_CLIENT_PREALLOCATE=false JAX_PLATFORMS=cuda,cpu timeout $((${END:-590} - 290)) python3 -m pytest -v -n 10 \
  -p no:cacheprovider --durations=15 -rfE > $OUT/pytest.txt 2>&1
echo "pytest exit $? at ${SECONDS} s"; grep -E "FAILED|ERROR|passed|failed" $OUT/pytest.txt | tail -20
wait; echo "== demo models done at ${SECONDS} s"
grep -h "trained to\|perplexity @\|wrote the release" $W/rope.log $W/hope.log
tar -cf $OUT/demo_releases.tar -C $W/release rope hope
for enc in hope rope; do
  start=$SECONDS
  XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 120 python3 -m hope_jax evaluate --config=configs/demo.py:$enc --workdir=$W/$enc \
    --config.data.source=source_tree --config.data.path=sysconfig:purelib --config.eval.split=train \
    --config.eval.perplexity.lengths="(8192,)" --config.eval.perplexity.max_windows=1 \
    --config.eval.output_dir=eval_1m > $W/$enc-1m.log 2>&1
  echo "$enc 1M exit $? after $((SECONDS - start)) s"; grep "perplexity @\|Error" $W/$enc-1m.log | tail -n 3
done
tar -czf $OUT/demo_runs.tgz -C $W --exclude=checkpoints --exclude=release .
echo "== 110m curve from ${SECONDS} s"
(cd benchmarks && timeout $((${END:-590} - SECONDS)) python3 long_context.py --size 110m --encoder hope \
  --lengths 4096,8192,16384,32768,65536,131072,262144,524288,1048576 --check_length 65536 \
  --out $OUT/long_110m.jsonl 2>&1 | grep "^{" | cut -c1-420)
echo "== done at ${SECONDS} s"
