# Session 7, call 4 (nvidia-h100-x2, two independent streams): every row with projection_impl auto
# (the fused q/k projection on Hopper), each GPU with its own peer.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks; S="--steps 15 --warmup 3 --logits_dtype bfloat16"; P="--peer ../.peer/torch_peer.py"
(export CUDA_VISIBLE_DEVICES=0
 timeout 200 python3 train_throughput.py --shapes 110m:4096x16 --encoders rope,hope,rope,hope $P $S --out $OUT/rows_gpu0.jsonl
 timeout 220 python3 train_throughput.py --shapes 110m:1024x64 --encoders nope,rope,hope,nope $P $S --out $OUT/rows_gpu0.jsonl
) > $OUT/gpu0.log 2>&1 &
(export CUDA_VISIBLE_DEVICES=1
 timeout 420 python3 train_throughput.py --shapes 110m:2048x32,340m:2048x32 --encoders rope,hope $P $S --out $OUT/rows_gpu1.jsonl
) > $OUT/gpu1.log 2>&1
wait
grep -h '^|\|rror' $OUT/gpu0.log $OUT/gpu1.log | head -40
