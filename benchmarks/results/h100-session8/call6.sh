# Session 8, call 6 (nvidia-h100-x1): the fused projection with CTA pairs sharing w's tile (cluster_m, TMA
# multicast): the kernel tests natively on the GPU; op sweep at 110M and 342M; step A/B at 110M 1024 x 64.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources pytest 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_rotary_projection.py -k "float64 or gradients or train_step" 2>&1 | tail -4
cd benchmarks
T='"" cluster_m=True cluster_m=True,grid_tile_width=8 cluster_m=True,grid_tile_width=2 grid_tile_width=6'
eval timeout 150 python3 projection_cost.py --tokens 65536 --embed 768 --heads 12 --tiles $T --out $OUT/call6_op_110m.jsonl 2>&1 | grep -v Warn | cut -c1-330 | tail -10
timeout 80 python3 projection_cost.py --tokens 65536 --embed 1024 --heads 16 --tiles "" cluster_m=True --out $OUT/call6_op_342m.jsonl 2>&1 | grep -v Warn | cut -c1-330 | tail -6
S="--shapes 110m:1024x64 --steps 15 --warmup 3 --logits_dtype bfloat16 --out $OUT/call6_rows.jsonl"
for t in "" cluster_m=True "" cluster_m=True; do
  timeout 75 python3 train_throughput.py $S --encoders rope --projection_tiles "$t" 2>&1 | grep '^| 110m' | sed "s/^/[$t] /"
done
timeout 60 python3 train_throughput.py $S --encoders nope 2>&1 | grep '^| 110m'
