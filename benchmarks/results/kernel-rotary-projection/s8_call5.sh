# Session 8, call 5 (nvidia-h100-x1): the fused forward against cuBLAS's product in the step: profiles of the
# 110M 1024 x 64 step (RoPE with projection_impl xla, then pallas, then NoPE) on one host; a forward-tile sweep.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks
for run in rope:xla rope:pallas nope:auto; do enc=${run%:*}; impl=${run#*:}
  XLA_FLAGS=--xla_dump_to=/tmp/p_$enc$impl/hlo timeout 150 python3 profile_step.py --shape 110m:1024x64 --encoder $enc --projection_impl $impl --logits_dtype bfloat16 --out /tmp/p_$enc$impl > /tmp/p_$enc$impl.log 2>&1
  cp /tmp/p_$enc$impl/summary.md $OUT/call5_profile_${enc}_$impl.md; head -3 /tmp/p_$enc$impl/summary.md | tail -1
done
T='"" tile_k=32,stages=6 tile_k=32,stages=5 epi_m=128 tile_n=64,stages=4 grid_tile_width=2 grid_tile_width=6'
eval timeout 200 python3 projection_cost.py --tokens 65536 --embed 768 --heads 12 --tiles $T --out $OUT/call5_op_110m.jsonl 2>&1 | grep -v Warn | cut -c1-330 | tail -12
