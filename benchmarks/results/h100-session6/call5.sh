# Session 6, call 5 (nvidia-h100-x2): final code (commit 6a94edf); the 110M 4096 x 16 row on both GPUs
# at once, each with its own peer, RoPE and HoPE twice: the spread of the row between GPUs.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks; S="--steps 15 --warmup 3 --logits_dtype bfloat16"; P="--peer ../.peer/torch_peer.py"
for g in 0 1; do
 (export CUDA_VISIBLE_DEVICES=$g
  timeout 230 python3 train_throughput.py --shapes 110m:4096x16 --encoders rope,hope,rope,hope $P $S --out $OUT/rows_gpu$g.jsonl
 ) > $OUT/gpu$g.log 2>&1 &
done
wait
grep -h '^|\|rror' $OUT/gpu0.log $OUT/gpu1.log | grep -v "^|---" | head -30
