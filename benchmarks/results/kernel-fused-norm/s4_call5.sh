python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
nvidia-smi -L; cd benchmarks; S="--steps 15 --warmup 3"; P="--peer ../.peer/torch_peer.py"
(export CUDA_VISIBLE_DEVICES=0
 timeout 330 python3 train_throughput.py --shapes 110m:1024x64,110m:2048x32 --encoders rope,hope $P $S --out $OUT/rows_gpu0.jsonl
 timeout 60 python3 train_throughput.py --shapes 110m:1024x64 --encoders nope $S --out $OUT/rows_gpu0.jsonl
 timeout 60 python3 norm_cost.py --out $OUT/norm_cost.jsonl) > $OUT/gpu0.log 2>&1 &
CUDA_VISIBLE_DEVICES=1 timeout 430 python3 train_throughput.py --shapes 110m:4096x16,340m:2048x32 --encoders rope,hope $P $S --out $OUT/rows_gpu1.jsonl > $OUT/gpu1.log 2>&1
wait
grep '^|' $OUT/gpu0.log $OUT/gpu1.log; grep -i error $OUT/gpu0.log $OUT/gpu1.log | head -5
for m in data=2 data=1,fsdp=2; do timeout 100 python3 train_throughput.py --shapes 340m:2048x32 --encoders hope --batch_per_device --mesh $m $S --out $OUT/scaling.jsonl 2>&1 | grep -E '^\{|rror' | cut -c1-250; done
