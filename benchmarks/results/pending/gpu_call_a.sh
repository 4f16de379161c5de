#!/bin/bash
# A prepared device call (session 11 had no device time left for it): run from the repository root
# with .wheels carried (shared/tools/device-wheels.sh .wheels tensorboardX importlib_resources).
# (1) The demo's models: configs/demo.py (4 layers × 128, L = 128: candidate D of session 11's
#     call 1), RoPE and HoPE side by side, each evaluated at 1…32 × L and released in bfloat16
#     ($OUT/demo_releases.tar unpacks as rope/ and hope/ into hope_jax/assets/demo/).
# (2) Both evaluated at 1,048,576 tokens (8,192 × L) through the README's evaluate command, on the
#     machine's installed Python sources (source_tree, train split: packages of over 1M tokens).
# (3) The default test suite on the GPU host, alone, verbose, for the time left.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | grep -v WARNING | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
W=/tmp/demo; mkdir -p $W
for enc in rope hope; do
  { python3 -m hope_jax train --config=configs/demo.py:$enc --workdir=$W/$enc --config.data.cache_dir=/tmp/c-$enc --config.train.steps=4000 --config.train.checkpoint_every=4000 &&
    python3 -m hope_jax evaluate --config=configs/demo.py:$enc --workdir=$W/$enc --config.data.cache_dir=/tmp/c-$enc &&
    python3 -m hope_jax export --workdir=$W/$enc --out=$W/release/$enc --format=release
  } > $W/$enc.log 2>&1 &
done
wait; echo "== demo models done at ${SECONDS} s"
grep -h "trained to\|perplexity @\|wrote the release" $W/rope.log $W/hope.log
tar -cf $OUT/demo_releases.tar -C $W/release rope hope
for enc in hope rope; do
  start=$SECONDS
  timeout 150 python3 -m hope_jax evaluate --config=configs/demo.py:$enc --workdir=$W/$enc \
    --config.data.source=source_tree --config.data.path=sysconfig:purelib --config.eval.split=train \
    --config.eval.perplexity.lengths="(8192,)" --config.eval.perplexity.max_windows=1 \
    --config.eval.output_dir=eval_1m > $W/$enc-1m.log 2>&1
  echo "$enc 1M exit $? after $((SECONDS - start)) s"; grep "perplexity @" $W/$enc-1m.log
done
tar -czf $OUT/demo_runs.tgz -C $W --exclude=checkpoints --exclude=release .
echo "== tests from ${SECONDS} s"
JAX_PLATFORMS=cuda,cpu timeout $((560 - SECONDS)) python3 -m pytest -v -n 12 -p no:cacheprovider \
  --durations=20 -rfE > $OUT/pytest.txt 2>&1
echo "pytest exit $? at ${SECONDS} s"; grep -E "FAILED|ERROR|passed|failed" $OUT/pytest.txt | tail -25
