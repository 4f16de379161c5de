# Session 7, call 5 (nvidia-h100-x1): encoder overhead at 110M 1024 x 64 with the fused q/k projection
# (auto), NoPE/RoPE/HoPE interleaved three times in one process; then RoPE/HoPE with projection_impl xla.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks; S="--steps 15 --warmup 3 --logits_dtype bfloat16"
timeout 330 python3 train_throughput.py --shapes 110m:1024x64 --encoders nope,rope,hope,nope,rope,hope,nope,rope,hope $S --out $OUT/rows.jsonl 2>&1 | grep '^|'
timeout 150 python3 train_throughput.py --shapes 110m:1024x64 --encoders nope,rope,hope --projection_impl xla $S --out $OUT/rows.jsonl 2>&1 | grep '^|'
