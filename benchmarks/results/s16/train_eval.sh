#!/bin/bash
# One run of #21's code protocol in one device command (carry .wheels), from the repository root:
#   bash benchmarks/results/s16/train_eval.sh RUN [OPTIONS ...]   (RUN: VARIANT[,seed=N], e.g. hope,seed=1)
# trains it, evaluates perplexity (1…64 × L), then the probes, then for each OPTIONS (e.g.
# scaling=yarn, long=128) the evaluation RUN,OPTIONS, each stage cut off at a deadline so that
# what finished comes back in $OUT/<run>.tgz (the run directory without its checkpoint).
# STANDARD=0 skips the perplexity and probe stages (e.g. a run for the long columns alone).
# Deadlines (seconds into the call) move with TRAIN_DEADLINE (default 470), PERPLEXITY_DEADLINE
# (535), PROBES_DEADLINE (580) and OPTIONS_DEADLINE (592); PROBES (default copy+passkey+recall+
# attention) names the probe stage's evaluations.
source benchmarks/results/s16/env.sh
run=$1; W=$PWD/.cache/code_runs; name=$(echo "$run" | tr ',=' '_-')
export CONFIG=configs/experiments/code_extrapolation.py
export STAGE_LOG=$OUT/$name.log
# pack: the run directory without its checkpoint into $OUT, after every stage, so that a call the
# device cuts short (its limit can be below 600 s when little device time is left) returns what finished.
pack() { tar -czf $OUT/$name.tgz -C $W/runs --exclude=checkpoints $name 2>/dev/null; cp $W/timings.tsv $OUT/ 2>/dev/null; }
# step LABEL DEADLINE ARG: one stage of experiments/extrapolation/run.sh, then pack.
step() { stage "$1" "$2" experiments/extrapolation/run.sh $W "$3"; pack; }
step train ${TRAIN_DEADLINE:-470} "train:$run"
grep -h '"step"' $W/runs/$name/metrics.jsonl 2>/dev/null | tail -n 2 | cut -c1-300
if [[ ${STANDARD:-1} != 0 ]]; then
  step perplexity ${PERPLEXITY_DEADLINE:-535} "$run+evals=perplexity"
  step probes ${PROBES_DEADLINE:-580} "$run+evals=${PROBES:-copy+passkey+recall+attention}"
fi
for options in "${@:2}"; do
  step "$options" ${OPTIONS_DEADLINE:-592} "$run+$options"
done
grep -v "^ *$" $OUT/$name.log | grep -iv "warning" | tail -n 25 | cut -c1-300
echo "== done at ${SECONDS} s"
