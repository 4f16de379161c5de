# Session 9, call 5 (nvidia-h100-x1): project_qkv's backward as one loop fusion (working tree) vs the
# 64-row epilogue alone (f7c49b6, .baseline/c_epi) vs session 8 (35efa35, .baseline/s8), 110M 1024 x 64;
# a profile of the working tree's RoPE step.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources pytest 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
JAX_PLATFORMS=cuda timeout 100 python3 -m pytest -q -p no:cacheprovider tests/test_rotary_projection.py -k "qkv" 2>&1 | tail -2
S="--shapes 110m:1024x64 --steps 15 --warmup 3 --logits_dtype bfloat16"
cd benchmarks
timeout 120 python3 train_throughput.py $S --encoders rope,nope --out $OUT/call5_rows.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[wt] /'
(cd ../.baseline/c_epi/benchmarks && timeout 100 python3 train_throughput.py $S --encoders rope --out $OUT/call5_rows_epi.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[f7c49b6] /')
(cd ../.baseline/s8/benchmarks && timeout 100 python3 train_throughput.py $S --encoders rope --out $OUT/call5_rows_s8.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[s8] /')
timeout 100 python3 train_throughput.py $S --encoders rope --out $OUT/call5_rows.jsonl 2>&1 | grep '^| 110m' | sed 's/^/[wt] /'
timeout 150 python3 profile_step.py --shape 110m:1024x64 --encoder rope --logits_dtype bfloat16 --out /tmp/p > /dev/null 2>&1; cp /tmp/p/summary.md $OUT/call5_profile_rope.md; head -40 /tmp/p/summary.md
