"""Long-context evaluation cost: memory and tokens/s of a model's forward pass at 8k … 64k tokens.

    python3 benchmarks/long_context.py --size 110m --lengths 8192,16384,32768,65536 --encoder hope

Runs the evaluation function (one forward pass per window, per-token NLL) on random tokens, one
window per call, and reports time, tokens/s and the device's peak memory.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from common import run_config, setup_run, summary, time_steps, write_json  # noqa: I001
from hope_jax import model
from hope_jax.training import step as train_step


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", default="110m")
  parser.add_argument("--encoder", default="hope")
  parser.add_argument("--train_length", type=int, default=1024)
  parser.add_argument("--lengths", default="8192,16384,32768,65536")
  parser.add_argument("--attention_impl", default="auto")
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  config = run_config(args.size, args.encoder, seq_len=args.train_length, batch_size=1,
                      attention_impl=args.attention_impl)
  run = setup_run(config)
  cfg, state = run.model_config, run.state
  nll_fn = train_step.make_eval_fn(run.graphdef, mesh=run.mesh, rules=run.rules,
                                   model_state=state.model_state)
  rng = np.random.default_rng(0)
  for length in map(int, args.lengths.split(",")):
    tokens = rng.integers(0, cfg.vocab_size, (1, length), dtype=np.int32)
    try:
      stats = summary(time_steps(lambda: nll_fn(state.params, tokens), warmup=1,
                                 steps=args.steps))
    except Exception as e:  # pylint: disable=broad-except
      write_json(args.out, {"length": length, "error": f"{type(e).__name__}: {str(e)[:300]}"})
      continue
    memory = jax.devices()[0].memory_stats() or {}
    write_json(args.out, {
        "size": args.size, "encoder": args.encoder, "length": length, **stats,
        "tokens_per_s": round(length / (stats["step_ms"] / 1e3)),
        "peak_gib": round(memory.get("peak_bytes_in_use", 0) / 2**30, 2),
        "params": model.num_params(cfg), "device": jax.devices()[0].device_kind,
        "attention_impl": args.attention_impl})


if __name__ == "__main__":
  main()
