# Session 6, call 6 (nvidia-h100-x2): final code (commit 2c716b0); profiles of the 110M 4096 x 16 step,
# bf16 logits, HoPE on GPU0 and RoPE on GPU1 at the same time: the rotation kernels of each.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks
for pair in 0:hope 1:rope; do
 g=${pair%%:*}; e=${pair##*:}
 (export CUDA_VISIBLE_DEVICES=$g
  XLA_FLAGS="--xla_dump_to=/tmp/p$e/hlo --xla_dump_hlo_module_re=jit_step --xla_dump_hlo_as_text" timeout 200 python3 profile_step.py --shape 110m:4096x16 --encoder $e --logits_dtype bfloat16 --out /tmp/p$e
  cp /tmp/p$e/summary.md $OUT/profile_110m_4096x16_${e}_bf16logits.md
 ) > $OUT/gpu$g.log 2>&1 &
done
wait
for e in hope rope; do echo "== $e"; head -12 $OUT/profile_110m_4096x16_${e}_bf16logits.md; grep -n "encoders.py" $OUT/profile_110m_4096x16_${e}_bf16logits.md | head -6; done
