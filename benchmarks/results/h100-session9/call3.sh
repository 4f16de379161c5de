# Session 9, call 3 (nvidia-h100-x1): epilogue of 64-row rounds (one fence, one store group each) and shared
# cos/sin: kernel tests natively; op A/B against session 8's kernel (35efa35, in .baseline/s8) in this call;
# pingpong again; timelines.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources pytest 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
JAX_PLATFORMS=cuda timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_rotary_projection.py -k "float64 or gradients" 2>&1 | tail -4
cd benchmarks
P="--tokens 65536 --embed 768 --heads 12"
(cd ../.baseline/s8/benchmarks && timeout 60 python3 projection_cost.py $P --tiles "" --out $OUT/call3_op_110m_s8.jsonl 2>&1 | grep pallas | cut -c1-330)
timeout 120 python3 projection_cost.py $P --tiles "" schedule=pingpong,stages=4,minor_n=False schedule=pingpong,stages=4 --out $OUT/call3_op_110m.jsonl 2>&1 | grep -v Warn | cut -c1-330 | tail -7
(cd ../.baseline/s8/benchmarks && timeout 60 python3 projection_cost.py $P --tiles "" --out $OUT/call3_op_110m_s8.jsonl 2>&1 | grep pallas | cut -c1-330)
for t in "" schedule=pingpong,stages=4,minor_n=False; do
  timeout 40 python3 kernel_timeline.py $P --tiles "$t" --out $OUT/kt 2>&1 | tail -1
done
rm -rf $OUT/kt/traces-*
