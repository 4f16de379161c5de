#!/bin/bash
# Session 15, device call 2 (carry .wheels), on the machine still warm from call 1: the 110m curve's
# 1,048,576-token length (cut off by call 1's 160 s), then the check against the ordinary pass at
# 65,536 (it had failed beside call 1's suite).  The length's row is appended to call1_2_long_110m.jsonl.
python3 -m pip install -q --no-index --find-links .wheels ml-collections tensorflow-datasets 2>&1 | grep -v WARNING | tail -1; export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc; cd benchmarks && timeout 150 python3 long_context.py --size 110m --encoder hope --lengths 1048576 --out $OUT/long_110m_1m.jsonl 2>&1 | grep "^{" | cut -c1-600; echo "== at $SECONDS s"; timeout $((280 - SECONDS)) python3 long_context.py --size 110m --encoder hope --lengths 4096 --check_length 65536 --out $OUT/check_110m.jsonl 2>&1 | grep "^{\|Error" | cut -c1-700; echo "== done at $SECONDS s"
