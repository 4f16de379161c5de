# Session 7, call 1 (nvidia-h100-x1): the q/k projection with the rotation in the epilogue
# (hope_jax/rotary_projection.py) against XLA's product + rotation pass, as an op; tile sweep.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks
T='"" tile_n=64,stages=4 tile_n=64,stages=5 tile_m=64,stages=4 grid_tile_width=4 tile_n=64,stages=4,grid_tile_width=8 minor_n=False,grid_tile_width=4 epi_m=128,stages=2'
eval timeout 250 python3 projection_cost.py --tokens 65536 --embed 768 --heads 12 --tiles $T --out $OUT/op_110m.jsonl 2>&1 | tail -40
eval timeout 200 python3 projection_cost.py --tokens 65536 --embed 1024 --heads 16 --tiles $T --out $OUT/op_342m.jsonl 2>&1 | grep -v Warn | tail -40
