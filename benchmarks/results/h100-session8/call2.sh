# Session 8, call 2 (nvidia-h100-x1; call 1 ran the same script and stopped: pl.dot is gone from JAX 0.11): the Triton backward
# block sweep at 110M and 342M op shapes, then one step A/B at 110M 1024 x 64 (RoPE, backward xla vs pallas; NoPE).
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks
B='"" dx_warps=4,dw_warps=4 dx_stages=4,dw_stages=4 dx_cols=256 dw_heads=4,dw_splits=16 dw_rows=64,dw_splits=4 dw_tokens=32 dw_splits=16 dx_rows=64,dx_warps=4'
eval timeout 240 python3 projection_cost.py --tokens 65536 --embed 768 --heads 12 --backward_tiles $B --out $OUT/op_110m.jsonl 2>&1 | grep -v Warn | cut -c1-600 | tail -14
eval timeout 100 python3 projection_cost.py --tokens 65536 --embed 1024 --heads 16 --backward_tiles '"" dx_cols=256 dw_heads=4,dw_splits=16' --out $OUT/op_342m.jsonl 2>&1 | grep -v Warn | cut -c1-600 | tail -7
S="--steps 15 --warmup 3 --logits_dtype bfloat16"
timeout 100 python3 train_throughput.py --shapes 110m:1024x64 --encoders rope --projection_backward xla $S --out $OUT/rows.jsonl 2>&1 | grep '^|'
timeout 150 python3 train_throughput.py --shapes 110m:1024x64 --encoders rope,nope --projection_backward pallas $S --out $OUT/rows.jsonl 2>&1 | grep '^|'
