# Session 8, call 4 (nvidia-h100-x1): profiles of the 110M 1024 x 64 step, NoPE and RoPE (auto: the fused
# q/k projection), where RoPE's extra time goes; then NoPE/RoPE/HoPE timed twice in turn in one process.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks
for enc in nope rope; do
  XLA_FLAGS=--xla_dump_to=/tmp/p_$enc/hlo timeout 150 python3 profile_step.py --shape 110m:1024x64 --encoder $enc --logits_dtype bfloat16 --out /tmp/p_$enc > /tmp/p_$enc.log 2>&1
  cp /tmp/p_$enc/summary.md $OUT/call4_profile_$enc.md; tail -2 /tmp/p_$enc.log
done
head -30 $OUT/call4_profile_rope.md
timeout 260 python3 train_throughput.py --shapes 110m:1024x64 --encoders nope,rope,hope,nope,rope,hope --steps 15 --warmup 3 --logits_dtype bfloat16 --out $OUT/call4_rows.jsonl 2>&1 | grep '^|'
