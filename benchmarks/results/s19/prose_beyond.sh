#!/bin/bash
# #21's beyond-the-paper step on the 34M prose protocol, and ALiBi's train step at the code
# protocol's shape, in one device command (carry .wheels and .corpus, where .corpus/prose is
# ../shared/corpus/prose copied), from the repository root:
#   bash benchmarks/results/s19/prose_beyond.sh
# 1. ALiBi's 110m train step at 1,024 × 64 on XLA's attention (what attention_impl="auto" picks
#    for a bias) and on cuDNN's with the bias, next to HoPE's: does the code protocol's ALiBi
#    run fit one 10-minute command?  (benchmarks/train_throughput.py, bf16 logits as trained.)
# 2. HoPE seed 2 evaluated with YaRN + log-n and with YaRN alone (one checkpoint), and the
#    stricter cutoff hope_p2 (seed 1) with YaRN: each stage cut off at a deadline.
source benchmarks/results/s16/env.sh
W=$PWD/.cache/prose_runs
export EXTRA="--config.data.path=.corpus/prose"
stage() {  # LABEL DEADLINE_S COMMAND...
  local start=$SECONDS
  (($2 - SECONDS > 5)) || { echo "$1: skipped (at ${SECONDS} s)"; return; }  # timeout 0 = none
  timeout $(($2 - SECONDS)) "${@:3}" >> $OUT/prose.log 2>&1
  echo "$1: exit $? in $((SECONDS - start)) s (at ${SECONDS} s)"
}
step_time() {  # ENCODERS ATTENTION_IMPL
  (cd benchmarks && python3 train_throughput.py --shapes 110m:1024x64 --encoders $1 \
    --attention_impl $2 --logits_dtype bfloat16 --steps 15 --warmup 3 --out $OUT/throughput.jsonl)
}
protocol() { experiments/extrapolation/run.sh $W "$@"; }
stage "alibi, xla attention" 65 step_time alibi xla
stage "hope and alibi, cudnn attention" 140 step_time hope,alibi cudnn
stage "train hope,seed=2" 265 protocol train:hope,seed=2
stage "hope,seed=2 + yarn + log-n" 345 protocol hope,seed=2+scaling=yarn,logn=1
stage "hope,seed=2 + yarn" 425 protocol hope,seed=2+scaling=yarn
stage "train hope_p2,seed=1" 515 protocol train:hope_p2,seed=1
stage "hope_p2,seed=1 + yarn" 592 protocol hope_p2,seed=1+scaling=yarn
grep -h '"impl"' $OUT/throughput.jsonl 2>/dev/null | cut -c1-200
grep -v "^ *$" $OUT/prose.log | grep -iv "warning" | grep -i "perplexity @\|error\|trained" | tail -n 30 | cut -c1-200
cp $W/timings.tsv $OUT/timings.tsv 2>/dev/null
tar -czf $OUT/prose_runs.tgz -C $W/runs --exclude=checkpoints .
echo "== done at ${SECONDS} s"
