# Session 9, call 6 (nvidia-h100-x1): why project_qkv's backward shows two concatenate fusions per layer:
# the working tree's RoPE step profiled with its optimized HLO; A/B with g behind an optimization barrier
# (.baseline/c_ob) and session 8 (.baseline/s8), 110M 1024 x 64.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
S="--shapes 110m:1024x64 --steps 15 --warmup 3 --logits_dtype bfloat16"
cd benchmarks
XLA_FLAGS=--xla_dump_to=/tmp/p/hlo timeout 150 python3 profile_step.py --shape 110m:1024x64 --encoder rope --logits_dtype bfloat16 --out /tmp/p > /dev/null 2>&1; cp /tmp/p/summary.md $OUT/call6_profile_rope.md; sed -n 10,36p /tmp/p/summary.md
f=$(ls /tmp/p/hlo/*jit_step*after_optimizations.txt | head -1); xz -c "$f" > $OUT/call6_step_after_optimizations.txt.xz; ls -la $OUT
(cd ../.baseline/c_ob/benchmarks && timeout 100 python3 train_throughput.py $S --encoders rope --out $OUT/call6_rows_ob.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[barrier] /')
(cd ../.baseline/s8/benchmarks && timeout 100 python3 train_throughput.py $S --encoders rope --out $OUT/call6_rows_s8.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[s8] /')
(cd ../.baseline/c_ob/benchmarks && timeout 100 python3 train_throughput.py $S --encoders rope --out $OUT/call6_rows_ob.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[barrier] /')
