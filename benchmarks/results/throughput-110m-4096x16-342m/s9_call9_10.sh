# Session 9, calls 9 and 10 (nvidia-h100-x1), run inline (no script on the device); call 8's second command
# had asked for a size "342m", which does not exist (the 342M configuration is "340m") and printed nothing.
# Call 9 showed that error; call 10:
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2; export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc; cd benchmarks; timeout 280 python3 train_throughput.py --shapes 340m:2048x32 --encoders rope,hope --peer ../.peer/torch_peer.py --steps 15 --warmup 3 --logits_dtype bfloat16 --out $OUT/call10_rows.jsonl 2>&1 | grep -v Warn | tail -6
