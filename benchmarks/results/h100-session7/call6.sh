# Session 7, call 6 (nvidia-h100-x1): the fused projection with one WGMMA left in flight per step
# (delay_release=1) against the default, as an op.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks
T='"" delay_release=1 delay_release=1,grid_tile_width=8 tile_m=64,stages=4,delay_release=1 tile_m=64,stages=4,delay_release=1,grid_tile_width=8'
eval timeout 280 python3 projection_cost.py --steps 10 --tokens 65536 --embed 768 --heads 12 --tiles $T --out $OUT/op_110m.jsonl 2>&1 | grep -v Warn | cut -c1-300 | tail -9
eval timeout 150 python3 projection_cost.py --steps 10 --tokens 65536 --embed 1024 --heads 16 --tiles '""' delay_release=1 --out $OUT/op_342m.jsonl 2>&1 | grep -v Warn | cut -c1-300 | tail -5
