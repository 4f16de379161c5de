# Session 5, call 1 (nvidia-h100-x2): two independent streams, one per GPU.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
nvidia-smi --query-gpu=index,name,power.limit,clocks.max.sm --format=csv
B=$PWD/.baseline/benchmarks
cd benchmarks
(export CUDA_VISIBLE_DEVICES=0
 python3 encoder_cost.py --out $OUT/g0_encoder.jsonl
 python3 $B/train_throughput.py --shapes 110m:1024x64 --encoders rope,hope --out $OUT/g0_base.jsonl
 python3 train_throughput.py --shapes 110m:1024x64 --encoders rope,hope,nope --out $OUT/g0_f32.jsonl
 python3 train_throughput.py --shapes 110m:1024x64 --encoders rope,hope,nope --logits_dtype bfloat16 --out $OUT/g0_bf16.jsonl
 python3 train_throughput.py --shapes 110m:1024x64 --encoders hope --logits_dtype bfloat16 --encoder_params layout=split_rotated --out $OUT/g0_bf16_sr.jsonl
) > $OUT/g0.log 2>&1 &
(export CUDA_VISIBLE_DEVICES=1
 python3 train_throughput.py --shapes 110m:4096x16 --encoders rope,hope --logits_dtype bfloat16 --out $OUT/g1_bf16.jsonl
 python3 train_throughput.py --shapes 110m:4096x16 --encoders hope --logits_dtype bfloat16 --encoder_params layout=split_rotated --out $OUT/g1_bf16_sr.jsonl
 python3 train_throughput.py --shapes 110m:4096x16 --encoders rope,hope --out $OUT/g1_f32.jsonl
 python3 long_context.py --out $OUT/g1_long.jsonl
) > $OUT/g1.log 2>&1 &
wait
cd $OUT && grep -h "^|" g0.log g1.log; tar czf logs.tgz g0.log g1.log; rm g0.log g1.log
