# Session 7, call 2 (nvidia-h100-x1): cos/sin prefetched while the product runs; planar-snake widths.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks
T='grid_tile_width=1 grid_tile_width=4 grid_tile_width=8 grid_tile_width=16 tile_m=64,stages=4,grid_tile_width=4 tile_m=64,stages=4,grid_tile_width=8 minor_n=False,grid_tile_width=8'
eval timeout 280 python3 projection_cost.py --tokens 65536 --embed 768 --heads 12 --tiles $T --out $OUT/op_110m.jsonl 2>&1 | grep -v Warn | cut -c1-400 | tail -12
eval timeout 180 python3 projection_cost.py --tokens 65536 --embed 1024 --heads 16 --tiles $T --out $OUT/op_342m.jsonl 2>&1 | grep -v Warn | cut -c1-400 | tail -12
