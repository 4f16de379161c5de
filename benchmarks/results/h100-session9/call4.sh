# Session 9, call 4 (nvidia-h100-x1): one backward for the q/k/v projections (project_qkv) and the 64-row
# epilogue; kernel tests natively; step A/B at 110M 1024 x 64 against session 8's tree (35efa35, .baseline/s8).
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources pytest 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
JAX_PLATFORMS=cuda timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_rotary_projection.py -k "float64 or gradients" 2>&1 | tail -3
S="--shapes 110m:1024x64 --steps 15 --warmup 3 --logits_dtype bfloat16"
cd benchmarks
timeout 150 python3 train_throughput.py $S --encoders nope,rope,hope --out $OUT/call4_rows.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[new] /'
(cd ../.baseline/s8/benchmarks && timeout 100 python3 train_throughput.py $S --encoders rope --out $OUT/call4_rows_s8.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[s8] /')
timeout 100 python3 train_throughput.py $S --encoders rope --projection_tiles schedule=pingpong,stages=4,minor_n=False --out $OUT/call4_rows.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[new pingpong] /'
timeout 100 python3 train_throughput.py $S --encoders rope,nope --out $OUT/call4_rows.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[new] /'
(cd ../.baseline/s8/benchmarks && timeout 100 python3 train_throughput.py $S --encoders rope --out $OUT/call4_rows_s8.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[s8] /')
