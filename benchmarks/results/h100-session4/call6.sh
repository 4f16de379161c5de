python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
nvidia-smi -L; cd benchmarks; S="--steps 10 --warmup 2"
CUDA_VISIBLE_DEVICES=0 timeout 150 python3 train_throughput.py --shapes 340m:2048x32 --encoders hope --batch_per_device $S --out $OUT/scaling4.jsonl 2>&1 | grep -E '^\{|rror' | cut -c1-220
for m in data=4 data=1,fsdp=4; do timeout 150 python3 train_throughput.py --shapes 340m:2048x32 --encoders hope --batch_per_device --mesh $m $S --out $OUT/scaling4.jsonl 2>&1 | grep -E '^\{|rror' | cut -c1-220; done
