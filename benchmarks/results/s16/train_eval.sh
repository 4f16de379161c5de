#!/bin/bash
# One run of #21's code protocol in one device command (carry .wheels), from the repository root:
#   bash benchmarks/results/s16/train_eval.sh RUN [OPTIONS ...]   (RUN: VARIANT[,seed=N], e.g. hope,seed=1)
# trains it, evaluates perplexity (1…64 × L), then the probes, then for each OPTIONS (e.g.
# scaling=yarn, long=128) the evaluation RUN,OPTIONS, each stage cut off at a deadline so that
# what finished comes back in $OUT/<run>.tgz (the run directory without its checkpoint).
# STANDARD=0 skips the perplexity and probe stages (e.g. a run for the long columns alone).
# OPTIONS_DEADLINE (default 592 s) moves the last stages' deadline earlier, for a call with less device time.
source benchmarks/results/s16/env.sh
run=$1; W=$PWD/.cache/code_runs; name=$(echo "$run" | tr ',=' '_-')
export CONFIG=configs/experiments/code_extrapolation.py
export STAGE_LOG=$OUT/$name.log
stage train 470 experiments/extrapolation/run.sh $W "train:$run"
grep -h '"step"' $W/runs/$name/metrics.jsonl 2>/dev/null | tail -n 2 | cut -c1-300
if [[ ${STANDARD:-1} != 0 ]]; then
  stage perplexity 535 experiments/extrapolation/run.sh $W "$run+evals=perplexity"
  stage probes 580 experiments/extrapolation/run.sh $W "$run+evals=copy+passkey+recall+attention"
fi
for options in "${@:2}"; do
  stage "$options" ${OPTIONS_DEADLINE:-592} experiments/extrapolation/run.sh $W "$run+$options"
done
grep -v "^ *$" $OUT/$name.log | grep -iv "warning" | tail -n 25 | cut -c1-300
cp $W/timings.tsv $OUT/timings.tsv 2>/dev/null
tar -czf $OUT/$name.tgz -C $W/runs --exclude=checkpoints $name
echo "== done at ${SECONDS} s"
