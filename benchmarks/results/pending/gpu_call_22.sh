#!/bin/bash
# A prepared device call for what #22 still owes (about 4 minutes; carry .wheels), from the
# repository root: the long pass against the ordinary pass at 65,536 tokens on the GPU (session
# 15's check failed in the ordinary pass, which then gave the model 65,535 positions and fell back
# to XLA's [T, T] attention; fixed in hope_jax/evaluation/forward.py), and the 340m curve's
# 1,048,576-token length (session 15's call ended at 524,288; about 140 s predicted).
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | grep -v WARNING | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
nvidia-smi --query-gpu=name,memory.total,driver_version,power.limit --format=csv,noheader
cd benchmarks
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 120 python3 long_context.py --size 110m --encoder hope --lengths 4096 \
  --check_length 65536 --out $OUT/check_110m.jsonl > $OUT/check.log 2>&1
echo "check exit $? at ${SECONDS} s"; grep "^{" $OUT/check.log | cut -c1-900
timeout $((560 - SECONDS)) python3 long_context.py --size 340m --encoder hope --lengths 1048576 \
  --out $OUT/long_340m_1m.jsonl 2>&1 | grep "^{" | cut -c1-600
echo "== done at ${SECONDS} s"
