python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc PYTHONPATH=$PWD
nvidia-smi -L; nvidia-smi -q -d CLOCK | grep -A4 "Max Clocks\|Applications Clocks" | head -12
cd benchmarks
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active --format=csv -lms 250 > $OUT/smi.csv &
SMI=$!
R="--shapes 110m:1024x64 --encoders rope"
date +%T.%N; timeout 150 python3 train_throughput.py $R --out $OUT/flags.jsonl 2>&1 | grep '^{'; date +%T.%N
for F in --xla_gpu_experimental_enable_fusion_block_level_rewriter=true --xla_gpu_experimental_enable_triton_softmax_priority_fusion=true --xla_gpu_experimental_all_fusions_with_triton=true; do
  XLA_FLAGS=$F timeout 150 python3 train_throughput.py $R --out $OUT/flags.jsonl 2>&1 | grep '^{\|rror' | tail -3
done
date +%T.%N; kill $SMI
for s in 110m:4096x16 340m:2048x32; do
  XLA_FLAGS="--xla_dump_to=/tmp/p/$s/hlo --xla_dump_hlo_module_re=jit_step --xla_dump_hlo_as_text" timeout 200 python3 profile_step.py --shape $s --encoder rope --out /tmp/p/$s 2>&1 | tail -3
  (cd /tmp/p/$s && tar czf $OUT/profile_${s/:/_}.tgz summary.md device_events.json.gz hlo/*jit_step*after_optimizations.txt)
done
ls -la $OUT
