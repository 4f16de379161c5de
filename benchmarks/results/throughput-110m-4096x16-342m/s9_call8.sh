# Session 9, call 8 (nvidia-h100-x1): the rows nearest the 1.4x target with project_qkv: 110M 4096 x 16 and
# 342M 2048 x 32, RoPE and HoPE, with the PyTorch peer in the same command.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks
timeout 250 python3 train_throughput.py --shapes 110m:4096x16 --encoders rope,hope --peer ../.peer/torch_peer.py --steps 15 --warmup 3 --logits_dtype bfloat16 --out $OUT/call8_rows.jsonl 2>&1 | grep '^|'
timeout 280 python3 train_throughput.py --shapes 342m:2048x32 --encoders rope,hope --peer ../.peer/torch_peer.py --steps 15 --warmup 3 --logits_dtype bfloat16 --out $OUT/call8_rows.jsonl 2>&1 | grep '^|'
