# Session 6, call 3 (nvidia-h100-x2): the in-place Pallas rotation with every head in one block
# (all loads before any store), vs the XLA pass over every band; op sweep and both step shapes.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks; S="--steps 15 --warmup 3 --logits_dtype bfloat16"; R="--encoder_params layout=split_rotated"
run() { # shape, gpu
  for i in 1 2; do
    timeout 100 python3 train_throughput.py --shapes $1 --encoders hope,rope --rotary_impl xla $S --out $OUT/rows_gpu$2.jsonl
    timeout 80 python3 train_throughput.py --shapes $1 --encoders hope $R $S --out $OUT/rows_gpu$2.jsonl
  done
}
(export CUDA_VISIBLE_DEVICES=0
 timeout 100 python3 encoder_cost.py --sweep 1x4,2x4,8x4,2x2,4x8,8x8,16x8 --out $OUT/op.jsonl
 run 110m:4096x16 0
) > $OUT/gpu0.log 2>&1 &
(export CUDA_VISIBLE_DEVICES=1; run 110m:1024x64 1) > $OUT/gpu1.log 2>&1
wait
grep -h '^|\|rror' $OUT/gpu0.log $OUT/gpu1.log | grep -v "^| shape\|^|---" | head -60
