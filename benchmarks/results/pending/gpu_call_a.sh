#!/bin/bash
# A prepared device call (run from the repository root with .wheels carried:
# shared/tools/device-wheels.sh .wheels tensorboardX importlib_resources).
# (1) The shipped demo releases (hope_jax/assets/demo) evaluated at 1,048,576 tokens (8,192 × L)
#     through the README's evaluate command, on the machine's installed Python sources (source_tree,
#     train split: packages of over 1M tokens), in bfloat16.  Session 13 gave each 120 s and both
#     were cut off: preparing the corpus took ~70 s of HoPE's (RoPE's reused it), and the models
#     are float32, for which the long pass attends with the blockwise XLA kernel (cuDNN's needs
#     bfloat16); model.dtype is the compute dtype, free at evaluation (the parameters stay float32).
# (2) The default test suite on the GPU host, alone, verbose (pyproject's -q cleared), with a JUnit
#     report.  Session 13 ran 77% of it (one failure, fixed since: a mesh of 8 default devices) and
#     then the first 32% verbose (benchmarks/results/demo-models/).
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | grep -v WARNING | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc XLA_PYTHON_CLIENT_PREALLOCATE=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
W=/tmp/demo; mkdir -p $W
for enc in hope rope; do
  python3 -c "from hope_jax.interop import run_from_release as r; r('hope_jax/assets/demo/$enc', '$W/$enc')"
  start=$SECONDS
  timeout $([ $enc = hope ] && echo 300 || echo 120) python3 -m hope_jax evaluate --config=configs/demo.py:$enc --workdir=$W/$enc \
    --config.data.source=source_tree --config.data.path=sysconfig:purelib --config.eval.split=train \
    --config.model.dtype=bfloat16 --config.eval.perplexity.lengths="(8192,)" --config.eval.perplexity.max_windows=1 \
    --config.eval.output_dir=eval_1m > $W/$enc-1m.log 2>&1
  echo "$enc 1M exit $? after $((SECONDS - start)) s"; grep "perplexity @\|Error" $W/$enc-1m.log | tail -n 3
done
tar -czf $OUT/eval_1m.tgz -C $W --exclude=checkpoints .
echo "== tests from ${SECONDS} s"
JAX_PLATFORMS=cuda,cpu timeout $((580 - SECONDS)) python3 -m pytest -o addopts="-m 'not slow'" -v -n 12 \
  -p no:cacheprovider --durations=20 -rfE --junitxml=$OUT/junit.xml > $OUT/pytest.txt 2>&1
echo "pytest exit $? at ${SECONDS} s"; grep -E " FAILED| ERROR|passed|failed" $OUT/pytest.txt | tail -25
