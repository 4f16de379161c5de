python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
R=$PWD; nvidia-smi -L
F="grep -E ^\{|Error|error"
cd $R/benchmarks
timeout 100 python3 norm_cost.py --out $OUT/norm_cost.jsonl 2>&1 | $F | cut -c1-300 | tail -8
timeout 100 python3 norm_cost.py --batch 32 --seq 2048 --dim 1024 --out $OUT/norm_cost.jsonl 2>&1 | $F | cut -c1-300 | tail -8
ab() { # $1 = shape, $2 = extra args
  for t in new:benchmarks base:.baseline/benchmarks new:benchmarks; do
    (cd $R/${t#*:} && timeout 150 python3 train_throughput.py --shapes $1 --encoders rope $2 --out $OUT/ab_${t%%:*}_${1/:/_}.jsonl 2>&1 | $F | cut -c1-150 | tail -3)
  done
}
ab 110m:1024x64
timeout 100 python3 train_throughput.py --shapes 110m:1024x64 --encoders rope --norm_impl xla --out $OUT/ab_newxla_110m_1024x64.jsonl 2>&1 | $F | cut -c1-150 | tail -3
ab 110m:4096x16
ab 340m:2048x32 "--steps 12 --warmup 3"
cd $R/benchmarks
XLA_FLAGS="--xla_dump_to=/tmp/p/n/hlo --xla_dump_hlo_module_re=jit_step --xla_dump_hlo_as_text" timeout 150 python3 profile_step.py --shape 110m:4096x16 --encoder rope --out /tmp/p/n 2>&1 | tail -1
(cd /tmp/p/n && tar czf $OUT/profile_pallas_110m_4096x16.tgz summary.md device_events.json.gz hlo/*jit_step*after_optimizations.txt)
