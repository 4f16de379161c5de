#!/bin/bash
# A prepared device call (session 11 had no device time left for it): the long forward pass's
# curve, 4k…1M tokens, for 110m (with the comparison against the ordinary pass at 65,536) and for
# 340m, each length's time, peak memory and cuDNN's causal-attention bound.  Carry .wheels.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | grep -v WARNING | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
L=4096,8192,16384,32768,65536,131072,262144,524288,1048576
(cd benchmarks && timeout 210 python3 long_context.py --size 110m --encoder hope --lengths $L \
  --check_length 65536 --out $OUT/long_110m.jsonl 2>&1 | grep "^{" | cut -c1-400)
echo "== 340m at ${SECONDS} s"
(cd benchmarks && timeout $((570 - SECONDS)) python3 long_context.py --size 340m --encoder hope \
  --lengths $L --out $OUT/long_340m.jsonl 2>&1 | grep "^{" | cut -c1-400)
echo "== done at ${SECONDS} s"
