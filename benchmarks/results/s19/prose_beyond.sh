#!/bin/bash
# #21's beyond-the-paper step on the 34M prose protocol, and an A/B of ALiBi's train step at the
# code protocol's shape, in one device command (carry .wheels, .corpus and .ab: .corpus/prose is
# ../shared/corpus/prose copied; .ab/base is hope_jax at 26cbc12, before the bias changes, with
# this tree's benchmarks/*.py), from the repository root:
#   bash benchmarks/results/s19/prose_beyond.sh
# 0. The GPU test of the biased cuDNN attention against XLA's (tests/test_model.py; pytest from .wheels).
# 1. ALiBi's 110m train step at 1,024 × 64 (attention_impl "auto", bf16 logits as trained), base
#    (auto = XLA's attention, a [B, N, T, T] bias) against this tree (auto = cuDNN's, one
#    [1, N, T, T] bias per batch), interleaved base, new, base, new.
# 2. HoPE seed 2 evaluated with YaRN + log-n and with YaRN alone (one checkpoint), then its plain
#    perplexity; each stage cut off at a deadline. PROSE=0 skips part 2 (a call of about 215 s).
source benchmarks/results/s16/env.sh
export OUT W=$PWD/.cache/prose_runs STAGE_LOG=$OUT/prose.log
export EXTRA="--config.data.path=.corpus/prose"
step_time() {  # ROOT: the package to time, .ab/base (with this tree's benchmarks/*.py) or .
  (cd $1/benchmarks && python3 train_throughput.py --shapes 110m:1024x64 --encoders alibi \
    --logits_dtype bfloat16 --steps 10 --warmup 3 --out $OUT/throughput.jsonl)
}
protocol() { experiments/extrapolation/run.sh $W "$@"; }
gpu_tests() {
  python3 -m pip install -q --no-index --find-links .wheels pytest
  JAX_PLATFORMS=cuda,cpu python3 -m pytest -q -o addopts="" -p no:cacheprovider -rs \
    tests/test_model.py -k "cudnn or shared_positions or blocked_bias"
}
export -f step_time protocol gpu_tests  # stage runs them under timeout, in a child bash
stage "gpu tests" 55 gpu_tests
stage "alibi step, base" 95 step_time .ab/base
stage "alibi step, new" 135 step_time .
stage "alibi step, base" 175 step_time .ab/base
stage "alibi step, new" 215 step_time .
if [[ ${PROSE:-1} != 0 ]]; then
  stage "train hope,seed=2" 345 protocol train:hope,seed=2
  stage "hope,seed=2 + yarn + log-n" 430 protocol hope,seed=2+scaling=yarn,logn=1
  stage "hope,seed=2 + yarn" 515 protocol hope,seed=2+scaling=yarn
  stage "hope,seed=2" 592 protocol hope,seed=2+evals=perplexity+passkey
fi
grep -h '"impl"' $OUT/throughput.jsonl 2>/dev/null | cut -c1-200
grep -v "^ *$" $OUT/prose.log | grep -iv "warning" | grep -i "perplexity @\|error\|trained\|passed\|failed\|SKIPPED" | tail -n 30 | cut -c1-200
cp $W/timings.tsv $OUT/timings.tsv 2>/dev/null
[[ -d $W/runs ]] && tar -czf $OUT/prose_runs.tgz -C $W/runs --exclude=checkpoints .
echo "== done at ${SECONDS} s"
