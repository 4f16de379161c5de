#!/bin/bash
# Session 11, device call 1.  (1) The training step of the restructured package (this commit)
# against the last commit before the restructure (db9d15b, checked out in .baseline/),
# interleaved twice, alone on the GPU.  (2) Then, side by side: the default test suite on the GPU
# host, and the demo's candidate models (experiments/demo_models/candidates.sh).
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | grep -v WARNING | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
nvidia-smi --query-gpu=name,memory.total,power.limit,driver_version --format=csv,noheader
S="--shapes 110m:1024x64 --encoders rope,hope --steps 15 --warmup 3 --logits_dtype bfloat16"
for round in 1 2; do
  for code in old new; do
    dir=benchmarks; [ $code = old ] && dir=.baseline/benchmarks
    (cd $dir && timeout 150 python3 train_throughput.py $S --out /tmp/ab_$code.jsonl 2>&1 | grep -E "^\| 110m")
    echo "   ($code, round $round, $(date +%T))"
  done
done
for code in old new; do sed "s/^{/{\"code\": \"$code\", /" /tmp/ab_$code.jsonl; done > $OUT/s11_call1_ab.jsonl
echo "== tests and demo candidates $(date +%T)"
export XLA_PYTHON_CLIENT_PREALLOCATE=false
bash experiments/demo_models/candidates.sh > $OUT/s11_call1_candidates.txt 2>&1 &
JAX_PLATFORMS=cuda,cpu timeout 330 python3 -m pytest -q -n 6 -p no:cacheprovider --durations=15 \
  > $OUT/s11_call1_pytest.txt 2>&1
echo "pytest exit $? $(date +%T)"; tail -40 $OUT/s11_call1_pytest.txt
wait
echo "== candidates $(date +%T)"; cat $OUT/s11_call1_candidates.txt
