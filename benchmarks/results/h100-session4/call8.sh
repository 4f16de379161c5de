python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
R=$PWD; nvidia-smi -L
ab() { # $1 = shape, $2 = trees, $3 = extra args
  for t in $2; do
    (cd $R/${t#*:} && timeout 150 python3 train_throughput.py --shapes $1 --encoders rope $3 --out $OUT/ab_${t%%:*}_${1/:/_}.jsonl 2>&1 | grep -E '^\{|rror' | cut -c1-130 | tail -3)
  done
}
ab 110m:1024x64 "new:benchmarks base:.baseline/benchmarks new:benchmarks"
ab 340m:2048x32 "new:benchmarks base:.baseline/benchmarks" "--steps 10 --warmup 2"
