# Session 9, call 7 (nvidia-h100-x1): project_qkv's backward with one root concatenation (working tree):
# profile (is g one fusion?), then interleaved A/B with session 8 (35efa35, .baseline/s8), 110M 1024 x 64.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
S="--shapes 110m:1024x64 --steps 15 --warmup 3 --logits_dtype bfloat16"
cd benchmarks
XLA_FLAGS=--xla_dump_to=/tmp/p/hlo timeout 150 python3 profile_step.py --shape 110m:1024x64 --encoder rope --logits_dtype bfloat16 --out /tmp/p > /dev/null 2>&1; cp /tmp/p/summary.md $OUT/call7_profile_rope.md; sed -n 3,3p /tmp/p/summary.md; grep -i "concatenate\|select\|mosaic" /tmp/p/summary.md | head -8
timeout 100 python3 train_throughput.py $S --encoders rope,nope --out $OUT/call7_rows.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[wt] /'
(cd ../.baseline/s8/benchmarks && timeout 100 python3 train_throughput.py $S --encoders rope --out $OUT/call7_rows_s8.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[s8] /')
timeout 100 python3 train_throughput.py $S --encoders rope,hope --out $OUT/call7_rows.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[wt] /'
(cd ../.baseline/s8/benchmarks && timeout 100 python3 train_throughput.py $S --encoders rope --out $OUT/call7_rows_s8.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[s8] /')
timeout 100 python3 train_throughput.py $S --encoders nope,rope --out $OUT/call7_rows.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[wt] /'
