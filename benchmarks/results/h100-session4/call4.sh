python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
nvidia-smi -L; cd benchmarks
S=64x4x4,32x4x4,16x4x4,8x4x4,16x2x2,32x2x2,32x8x8,16x8x8,8x8x8,16x4x8,128x4x4
timeout 250 python3 norm_cost.py --sweep $S --out $OUT/norm_sweep.jsonl 2>&1 | grep '^{' | cut -c1-200
timeout 250 python3 norm_cost.py --batch 32 --seq 2048 --dim 1024 --sweep $S --out $OUT/norm_sweep.jsonl 2>&1 | grep '^{' | cut -c1-200
