python3 -m pip install -q --no-index --find-links .wheels tensorflow-datasets ml-collections tensorboardX importlib_resources 2>&1 | tail -2
export PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=/tmp/jc
nvidia-smi -L; cd benchmarks
for e in rope hope nope; do
  XLA_FLAGS="--xla_dump_to=/tmp/p/$e/hlo --xla_dump_hlo_module_re=jit_step --xla_dump_hlo_as_text" timeout 120 python3 profile_step.py --shape 110m:1024x64 --encoder $e --steps 5 --out /tmp/p/$e 2>&1 | grep -E "busy|rror"
  cp /tmp/p/$e/summary.md $OUT/profile_110m_1024x64_$e.md
done
