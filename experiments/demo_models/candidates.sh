#!/bin/bash
# The demo's candidate models: RoPE and HoPE trained with configs/demo.py at four shapes, 128 wide,
# 16.4M tokens each (A: 2 layers, L = 64; B: 4 layers, L = 64; C: 2 layers, L = 128; D: 4 layers,
# L = 128), all eight at once on one GPU; each evaluated at 1…32 × L and released in bfloat16.
# Writes $OUT/releases_{A,B,C,D}.tar and $OUT/demo_runs.tgz (logs, metrics, evaluations).
W=/tmp/demo; mkdir -p $W
cand() {  # name encoder [overrides]: train, evaluate, release
  local name=$1 enc=$2; shift 2
  local d=$W/$name-$enc o="--config.data.cache_dir=/tmp/cache-$name-$enc $*"
  { timeout 300 python3 -m hope_jax train --config=configs/demo.py:$enc --workdir=$d $o &&
    timeout 120 python3 -m hope_jax evaluate --config=configs/demo.py:$enc --workdir=$d $o &&
    timeout 60 python3 -m hope_jax export --workdir=$d --out=$W/release-$name-$enc --format=release
  } > $W/$name-$enc.log 2>&1
  echo "$name-$enc exit $? $(date +%T)"
}
for enc in rope hope; do
  cand A $enc &
  cand B $enc --config.model.num_layers=4 &
  cand C $enc --config.data.seq_len=128 --config.train.batch_size=32 &
  cand D $enc --config.model.num_layers=4 --config.data.seq_len=128 --config.train.batch_size=32 &
done
wait
python3 - <<'PY'
import glob, json, os
for d in sorted(glob.glob("/tmp/demo/[A-D]-*")):
  if not os.path.isdir(d):
    continue
  try:
    r = json.load(open(f"{d}/eval/perplexity.json"))
  except OSError:
    print(os.path.basename(d), "no results")
    continue
  L = r["run"]["train_length"]
  cells = " ".join(f"{x['length'] // L}x:{x['perplexity']:.1f}" for x in r["results"])
  print(os.path.basename(d), cells)
PY
for c in A B C D; do tar -cf $OUT/releases_$c.tar -C $W release-$c-rope release-$c-hope; done
tar -czf $OUT/demo_runs.tgz -C $W --exclude=checkpoints --exclude='release-*' .
