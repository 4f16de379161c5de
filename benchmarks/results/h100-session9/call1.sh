# Session 9, call 1 (nvidia-h100-x1): the pingpong schedule of the fused projection: kernel tests natively
# on the GPU; op sweep at 110M and 342M against the cooperative schedule; the kernel timeline of both.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources pytest 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
JAX_PLATFORMS=cuda timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_rotary_projection.py -k "float64 or gradients" 2>&1 | tail -4
cd benchmarks
T='"" schedule=pingpong,stages=4 schedule=pingpong,stages=3 schedule=pingpong,stages=4,grid_tile_width=8 schedule=pingpong,stages=4,minor_n=False'
eval timeout 170 python3 projection_cost.py --tokens 65536 --embed 768 --heads 12 --tiles $T --out $OUT/call1_op_110m.jsonl 2>&1 | grep -v Warn | cut -c1-330 | tail -10
timeout 80 python3 projection_cost.py --tokens 65536 --embed 1024 --heads 16 --tiles "" schedule=pingpong,stages=4 --out $OUT/call1_op_342m.jsonl 2>&1 | grep -v Warn | cut -c1-330 | tail -6
for t in "" schedule=pingpong,stages=4; do
  timeout 40 python3 kernel_timeline.py --tokens 65536 --embed 768 --heads 12 --tiles "$t" --out $OUT/kt 2>&1 | tail -1
done
rm -rf $OUT/kt/traces-*
