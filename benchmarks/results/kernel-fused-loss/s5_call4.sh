# Session 5, call 4 (nvidia-h100-x2): the one-pass Pallas loss. GPU0: op sweep and A/B in one
# process per setting; GPU1: the 110M rows with their peers (bf16 logits, loss_impl auto = pallas).
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
nvidia-smi -L; cd benchmarks; S="--steps 15 --warmup 3 --logits_dtype bfloat16"; P="--peer ../.peer/torch_peer.py"
(export CUDA_VISIBLE_DEVICES=0
 timeout 120 python3 loss_cost.py --sweep 8x512x4,2x2048x4,8x1024x8,16x256x4 --out $OUT/loss_cost.jsonl
 for L in xla pallas; do timeout 100 python3 train_throughput.py --shapes 110m:4096x16 --encoders rope,hope --loss_impl $L $S --out $OUT/ab_gpu0.jsonl; done
 timeout 150 python3 train_throughput.py --shapes 110m:1024x64 --encoders rope,hope,nope --loss_impl pallas $S --out $OUT/ab_gpu0.jsonl
) > $OUT/gpu0.log 2>&1 &
L=auto; CUDA_VISIBLE_DEVICES=1 timeout 60 python3 loss_cost.py --batch 2 --seq 512 --steps 2 > $OUT/gpu1.log 2>&1 || L=xla
CUDA_VISIBLE_DEVICES=1 timeout 470 python3 train_throughput.py --shapes 110m:4096x16,110m:1024x64,110m:2048x32 --encoders rope,hope --loss_impl $L $P $S --out $OUT/rows_gpu1.jsonl >> $OUT/gpu1.log 2>&1
wait
grep -h '^|\|rror' $OUT/gpu0.log $OUT/gpu1.log | head -60; grep -h '"pass"' $OUT/loss_cost.jsonl | cut -c1-200
