# Session 6, call 2 (nvidia-h100-x2): XLA rotation over every band (HoPE = RoPE's pass), and the
# in-place Pallas rotation moving whole 16-byte vectors (split_rotated rotary block = 2 x 24 channels).
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks; S="--steps 15 --warmup 3 --logits_dtype bfloat16"; P="--peer ../.peer/torch_peer.py"
(export CUDA_VISIBLE_DEVICES=0
 timeout 100 python3 encoder_cost.py --sweep 8x4,8x2,16x8,32x8,4x4,32x4 --out $OUT/op.jsonl
 timeout 250 python3 train_throughput.py --shapes 110m:4096x16 --encoders rope,hope --rotary_impl xla $P $S --out $OUT/rows_gpu0.jsonl
 timeout 120 python3 train_throughput.py --shapes 110m:4096x16 --encoders hope --encoder_params layout=split_rotated $S --out $OUT/rows_gpu0.jsonl
) > $OUT/gpu0.log 2>&1 &
(export CUDA_VISIBLE_DEVICES=1
 timeout 170 python3 train_throughput.py --shapes 110m:1024x64 --encoders nope,rope,hope --rotary_impl xla $S --out $OUT/rows_gpu1.jsonl
 timeout 150 python3 train_throughput.py --shapes 110m:1024x64 --encoders hope,rope --encoder_params layout=split_rotated $S --out $OUT/rows_gpu1.jsonl
 timeout 120 python3 train_throughput.py --shapes 110m:1024x64 --encoders hope --rotary_impl xla $S --out $OUT/rows_gpu1.jsonl
) > $OUT/gpu1.log 2>&1
wait
grep -h '^|\|rror' $OUT/gpu0.log $OUT/gpu1.log | head -60
