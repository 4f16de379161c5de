# Session 9, call 2 (nvidia-h100-x1): the epilogue with one fence and one store group per round (cooperative
# warpgroups share cos/sin): kernel tests natively; op sweep of epilogue rounds and both schedules; timelines.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources pytest 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
JAX_PLATFORMS=cuda timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_rotary_projection.py -k "float64 or gradients" 2>&1 | tail -4
cd benchmarks
T='"" epi_m=64,store_slots=1 epi_m=16,store_slots=4 epi_m=16,store_slots=2 schedule=pingpong,stages=4,minor_n=False schedule=pingpong,stages=4,minor_n=False,epi_m=16,store_slots=4'
eval timeout 200 python3 projection_cost.py --tokens 65536 --embed 768 --heads 12 --tiles $T --out $OUT/call2_op_110m.jsonl 2>&1 | grep -v Warn | cut -c1-330 | tail -10
timeout 90 python3 projection_cost.py --tokens 65536 --embed 1024 --heads 16 --tiles "" schedule=pingpong,stages=4,minor_n=False --out $OUT/call2_op_342m.jsonl 2>&1 | grep -v Warn | cut -c1-330 | tail -6
for t in "" epi_m=64,store_slots=1 schedule=pingpong,stages=4,minor_n=False; do
  timeout 40 python3 kernel_timeline.py --tokens 65536 --embed 768 --heads 12 --tiles "$t" --out $OUT/kt 2>&1 | tail -1
done
rm -rf $OUT/kt/traces-*
