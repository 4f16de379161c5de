# Session 5, call 2 (nvidia-h100-x2): GPU0 encoder op, long context, profile; GPU1 XLA flag sweep.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
mkdir -p $OUT/r; R=$OUT/r
cd benchmarks
(export CUDA_VISIBLE_DEVICES=0
 python3 encoder_cost.py --out $R/encoder.jsonl
 python3 long_context.py --out $R/long.jsonl
 XLA_FLAGS="--xla_dump_to=/tmp/p/hlo --xla_dump_hlo_module_re=jit_step --xla_dump_hlo_as_text" timeout 200 python3 profile_step.py --shape 110m:4096x16 --encoder rope --logits_dtype bfloat16 --out /tmp/p
 cp /tmp/p/summary.md $R/profile_110m_4096x16_rope_bf16logits.md
 (cd /tmp/p && tar czf $R/profile_hlo.tgz device_events.json.gz hlo/*jit_step*after_optimizations.txt)
) > $R/g0.log 2>&1 &
(export CUDA_VISIBLE_DEVICES=1
 for s in "110m:4096x16 --encoders rope" "340m:2048x32 --encoders hope"; do
  for F in "" --xla_gpu_enable_cublaslt=true --xla_gpu_triton_gemm_any=true --xla_gpu_enable_triton_gemm=false; do
   XLA_FLAGS=$F timeout 150 python3 train_throughput.py --shapes $s --logits_dtype bfloat16 --steps 15 --warmup 3 --out $R/flags.jsonl
  done
 done
) > $R/g1.log 2>&1 &
wait
grep -h "^|\|rror" $R/g0.log $R/g1.log | head -80
cd $OUT && tar czf r.tgz r && rm -rf r
