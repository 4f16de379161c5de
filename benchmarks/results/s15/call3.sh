#!/bin/bash
# Session 15, device call 3 (carry .wheels), warm machine: the check at 65,536 alone, with
# preallocation off.  It failed again, in the ordinary pass (see call3_check_error.txt): a window of
# 65,536 tokens gave the model 65,535 positions, an odd length, so attention_impl="auto" chose
# XLA's attention over cuDNN's and asked for [12, 65535, 65535] scores (96 and 192 GiB).  Fixed in
# hope_jax/evaluation/forward.py (the model reads an even length); not re-run this session.
python3 -m pip install -q --no-index --find-links .wheels ml-collections tensorflow-datasets 2>&1 | grep -v WARNING | tail -1; export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false; cd benchmarks && timeout 170 python3 long_context.py --size 110m --encoder hope --lengths 4096 --check_length 65536 --out $OUT/check_110m.jsonl > $OUT/check.log 2>&1; echo "exit $? at $SECONDS s"; grep "^{" $OUT/check.log | cut -c1-900; grep -i "error\|exhaust" $OUT/check.log | head -5 | cut -c1-600
