# Session 6, call 7 (nvidia-h100-x2): A/B of session 4's change g (q/k/v projections with a stacked
# backward, a custom VJP) against HEAD 095a97a (in .baseline), 110M 4096 x 16, bf16 logits,
# alternating base / new twice on each GPU.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
S="--shapes 110m:4096x16 --encoders rope,hope --steps 15 --warmup 3 --logits_dtype bfloat16"
for g in 0 1; do
 (export CUDA_VISIBLE_DEVICES=$g
  for i in 1 2; do
   (cd .baseline/benchmarks && timeout 70 python3 train_throughput.py $S --out $OUT/base_gpu$g.jsonl)
   (cd benchmarks && timeout 70 python3 train_throughput.py $S --out $OUT/new_gpu$g.jsonl)
  done
 ) > $OUT/gpu$g.log 2>&1 &
done
wait
for f in $OUT/*.jsonl; do echo "== $f"; python3 -c "
import json,sys
for l in open('$f'):
    r=json.loads(l); print(r['impl'], round(r['step_ms'],2), round(r.get('blocked_step_ms',0),2))"; done
