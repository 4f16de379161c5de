# Session 6, call 4 (nvidia-h100-x2): final code (commit 6a94edf), every row with its peer, bf16 logits.
# GPU0: encoder op; 110M 4096 x 16 RoPE/HoPE twice; 1024 x 64 NoPE/RoPE/HoPE twice (encoder overhead).
# GPU1: 110M 1024 x 64 and 2048 x 32; 342M 2048 x 32.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks; S="--steps 15 --warmup 3 --logits_dtype bfloat16"; P="--peer ../.peer/torch_peer.py"
(export CUDA_VISIBLE_DEVICES=0
 timeout 60 python3 encoder_cost.py --out $OUT/op.jsonl
 timeout 200 python3 train_throughput.py --shapes 110m:4096x16 --encoders rope,hope,rope,hope $P $S --out $OUT/rows_gpu0.jsonl
 timeout 200 python3 train_throughput.py --shapes 110m:1024x64 --encoders nope,rope,hope,nope,rope,hope $S --out $OUT/rows_gpu0.jsonl
) > $OUT/gpu0.log 2>&1 &
(export CUDA_VISIBLE_DEVICES=1
 timeout 250 python3 train_throughput.py --shapes 110m:1024x64,110m:2048x32 --encoders rope,hope $P $S --out $OUT/rows_gpu1.jsonl
 timeout 250 python3 train_throughput.py --shapes 340m:2048x32 --encoders rope,hope $P $S --out $OUT/rows_gpu1.jsonl
) > $OUT/gpu1.log 2>&1
wait
grep -h '^|\|rror' $OUT/gpu0.log $OUT/gpu1.log | grep -v "^|---" | head -60
