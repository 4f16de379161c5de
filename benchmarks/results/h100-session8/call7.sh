# Session 8, call 7 (nvidia-h100-x1): the fused kernel's timeline (Mosaic GPU profiler: product and epilogue per
# output tile) at 110M and 342M shapes; then the 110M 4096 x 16 row with the peer on this host.
python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
cd benchmarks
timeout 60 python3 kernel_timeline.py --tokens 65536 --embed 768 --heads 12 --out /tmp/kt110 2>&1 | tail -1
timeout 60 python3 kernel_timeline.py --tokens 65536 --embed 768 --heads 12 --tiles delay_release=1 --out /tmp/kt110 2>&1 | tail -1
timeout 60 python3 kernel_timeline.py --tokens 65536 --embed 1024 --heads 16 --out /tmp/kt342 2>&1 | tail -1
cat /tmp/kt110/timeline.jsonl /tmp/kt342/timeline.jsonl > $OUT/call7_timeline.jsonl; cp "$(ls -tr /tmp/kt110/traces/*.json | sed -n 3p)" $OUT/call7_trace_110m_default.json
timeout 300 python3 train_throughput.py --shapes 110m:4096x16 --encoders rope,hope --peer ../.peer/torch_peer.py --steps 15 --warmup 3 --logits_dtype bfloat16 --out $OUT/call7_rows.jsonl 2>&1 | grep '^|'
