#!/bin/bash
# Session 16, device call 1 (carry .wheels), from the repository root, about 4 minutes:
# (The background preparation failed at once: prepare.py, run as a script, did not find hope_jax
# on its path; call 2 prepared the corpus in its training command instead, and prepare.py, which
# duplicated that preparation, was deleted after this call: see git history.)
# (1) #22: the long pass against the ordinary pass at 65,536 tokens on the GPU (110m HoPE, random
#     weights; session 15's check failed in the ordinary pass, fixed since), while #21's corpus (the
#     machine's Python sources) is prepared on the CPU into .cache for call 2;
# (2) #22: the 340m curve's 1,048,576-token length, alone on the GPU.
source benchmarks/results/s16/env.sh
(JAX_PLATFORMS=cpu python3 benchmarks/results/s16/prepare.py configs/experiments/code_extrapolation.py > $OUT/prepare.log 2>&1; echo "prepare exit $? at ${SECONDS} s") &
cd benchmarks
XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 150 python3 long_context.py --size 110m --encoder hope --lengths 4096 \
  --check_length 65536 --out $OUT/check_110m.jsonl > $OUT/check.log 2>&1
echo "check exit $? at ${SECONDS} s"; grep "^{" $OUT/check.log | cut -c1-900; grep -i "error" $OUT/check.log | tail -3
wait; grep -v "^ *$" $OUT/prepare.log | tail -6
timeout $((570 - SECONDS)) python3 long_context.py --size 340m --encoder hope --lengths 1048576 \
  --out $OUT/long_340m_1m.jsonl 2>&1 | grep "^{" | cut -c1-600
echo "== done at ${SECONDS} s"
