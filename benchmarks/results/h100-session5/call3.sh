# Session 5, call 3 (nvidia-h100-x2): every row with bf16 logits, each GPU with its own peer.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
nvidia-smi -L; cd benchmarks; S="--steps 15 --warmup 3 --logits_dtype bfloat16"; P="--peer ../.peer/torch_peer.py"
(export CUDA_VISIBLE_DEVICES=0
 timeout 330 python3 train_throughput.py --shapes 110m:1024x64,110m:2048x32 --encoders rope,hope $P $S --out $OUT/rows_gpu0.jsonl
 timeout 60 python3 train_throughput.py --shapes 110m:1024x64 --encoders nope $S --out $OUT/rows_gpu0.jsonl) > $OUT/gpu0.log 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout 450 python3 train_throughput.py --shapes 110m:4096x16,340m:2048x32 --encoders rope,hope $P $S --out $OUT/rows_gpu1.jsonl > $OUT/gpu1.log 2>&1
wait
grep '^|' $OUT/gpu0.log $OUT/gpu1.log; grep -i error $OUT/gpu0.log $OUT/gpu1.log | head -5
