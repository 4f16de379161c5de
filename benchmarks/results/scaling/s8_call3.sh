# Session 8, call 3 (nvidia-h100-x4): the fused q/k projection (auto) on several GPUs at once.
# Phase A, three independent streams: GPU 0 the one-GPU scaling reference; GPUs 2,3 the two-GPU run;
# GPU 1 XLA's command buffers on/off with the fused projection and with XLA's (110M 1024 x 64 RoPE).
# Phase B: four GPUs, data = 4 and fsdp = 4.  342M HoPE, 2048 x 32 per GPU, bf16 logits.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks; nvidia-smi --query-gpu=index,name,power.limit --format=csv,noheader
C="--shapes 340m:2048x32 --encoders hope --batch_per_device --steps 10 --warmup 2 --logits_dtype bfloat16"
S="--shapes 110m:1024x64 --steps 15 --warmup 3 --logits_dtype bfloat16"
(CUDA_VISIBLE_DEVICES=0 timeout 200 python3 train_throughput.py $C --out $OUT/scaling.jsonl 2>&1 | grep '^| 340m' | sed 's/^/gpus=1 /') &
(CUDA_VISIBLE_DEVICES=2,3 timeout 200 python3 train_throughput.py $C --mesh data=2 --out $OUT/scaling.jsonl 2>&1 | grep '^| 340m' | sed 's/^/gpus=2 data=2 /') &
(for impl in pallas xla; do for cb in default off; do
   if [ $cb = off ]; then F=--xla_gpu_enable_command_buffer=; else F=; fi
   CUDA_VISIBLE_DEVICES=1 XLA_FLAGS=$F timeout 100 python3 train_throughput.py $S --encoders rope --projection_impl $impl --out $OUT/command_buffers.jsonl 2>&1 | grep '^| 110m' | sed "s/^/$impl cb=$cb /"
 done; done) &
wait
timeout 150 python3 train_throughput.py $C --mesh data=4 --out $OUT/scaling.jsonl 2>&1 | grep '^| 340m' | sed 's/^/gpus=4 data=4 /'
timeout 150 python3 train_throughput.py $C --mesh data=1,fsdp=4 --out $OUT/scaling.jsonl 2>&1 | grep '^| 340m' | sed 's/^/gpus=4 fsdp=4 /'
