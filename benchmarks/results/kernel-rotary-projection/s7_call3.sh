# Session 7, call 3 (nvidia-h100-x1): the train step with projection_impl pallas (rotation in the q/k
# product's epilogue) against xla, alternating processes on one GPU; the peer once.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks; S="--steps 15 --warmup 3 --logits_dtype bfloat16"; P="--peer ../.peer/torch_peer.py"
R=$OUT/rows.jsonl
timeout 150 python3 train_throughput.py --shapes 110m:4096x16 --encoders rope,hope --projection_impl pallas $P $S --out $R 2>&1 | grep '^|'
timeout 100 python3 train_throughput.py --shapes 110m:4096x16 --encoders rope,hope --projection_impl xla $S --out $R 2>&1 | grep '^|'
timeout 100 python3 train_throughput.py --shapes 110m:4096x16 --encoders rope,hope --projection_impl pallas $S --out $R 2>&1 | grep '^|'
timeout 100 python3 train_throughput.py --shapes 110m:1024x64 --encoders nope,rope,hope --projection_impl pallas $S --out $R 2>&1 | grep '^|'
timeout 100 python3 train_throughput.py --shapes 110m:1024x64 --encoders rope,hope --projection_impl xla $S --out $R 2>&1 | grep '^|\|rror'
