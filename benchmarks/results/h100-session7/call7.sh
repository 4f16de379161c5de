# Session 7, call 7 (nvidia-h100-x1): profiles of the 110M 1024 x 64 RoPE step, projection_impl pallas
# and xla (where the fused projection's time goes inside the step).
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks
for impl in pallas xla; do
  XLA_FLAGS=--xla_dump_to=/tmp/p_$impl/hlo timeout 200 python3 profile_step.py --shape 110m:1024x64 --encoder rope --logits_dtype bfloat16 --projection_impl $impl --out /tmp/p_$impl > /tmp/p_$impl.log 2>&1
  cp /tmp/p_$impl/summary.md $OUT/call7_profile_rope_$impl.md; tail -3 /tmp/p_$impl.log
done
head -40 $OUT/call7_profile_rope_pallas.md
