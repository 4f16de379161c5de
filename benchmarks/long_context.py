"""Long-context evaluation cost: time and peak memory of the layer-by-layer forward, 4k … 1M tokens.

    python3 benchmarks/long_context.py --size 110m --encoder hope --out long.jsonl \\
        --lengths 4096,8192,16384,32768,65536,131072,262144,524288,1048576 --check_length 65536

Per length (ascending: the peak memory read is the process's): one window of random tokens through
the evaluation's long forward pass (:class:`hope_jax.evaluation.long_forward.LongForward`, NLL and
argmax of every position: what ``evaluate`` runs at ``eval.long_forward_min_tokens`` and beyond),
timed after a warm-up that compiles every program (two blocks' worth of the pass; a length whose first
timed pass takes over ``--single_step_s`` is timed once),
with the device's peak memory; then, in the same process, the bound: cuDNN's causal flash attention
alone at the pass's shapes, one layer timed and multiplied by the number of layers (no pass that
attends with it can be faster).  ``attention_share`` = bound / pass time (the issue's target: at
least 0.8).  ``--check_length`` (run last: the ordinary pass peaks higher) compares the long pass
with the ordinary one on one window: NLL, argmax, and the logits of the window's last 4,096 positions.
The model has random weights and no optimizer state (parameters only, float32).
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from common import run_config, summary, time_steps, write_json  # noqa: I001

from hope_jax import model
from hope_jax.config import resolve
from hope_jax.evaluation import forward, long_forward
from hope_jax.parallel import sharding
from hope_jax.training import step as train_step

CHECK_TAIL = 4096  # positions whose logits --check_length compares


def cudnn_bound_ms(cfg: model.TransformerConfig, length: int, steps: int) -> float | None:
  """Milliseconds of cuDNN causal attention at the model's shapes for one layer (None off GPU)."""
  if jax.default_backend() != "gpu":
    return None
  shapes = [(1, length, cfg.num_heads, cfg.head_dim)] + [
    (1, length, cfg.num_kv_heads, cfg.head_dim)
  ] * 2

  @jax.jit
  def inputs(key):
    return tuple(
      jax.random.normal(k, s, cfg.compute_jnp_dtype)
      for k, s in zip(jax.random.split(key, 3), shapes)
    )

  attend = jax.jit(
    functools.partial(
      jax.nn.dot_product_attention, is_causal=True, scale=cfg.head_dim**-0.5, implementation="cudnn"
    )
  )
  q, k, v = inputs(jax.random.key(0))
  return summary(time_steps(lambda: attend(q, k, v), warmup=1, steps=steps))["step_ms"]


def peak_gib() -> float:
  """The device's peak memory in use so far, GiB (0 where the backend does not report it)."""
  return round((jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use", 0) / 2**30, 2)


def check(long: long_forward.LongForward, whole, tokens: np.ndarray) -> dict[str, float]:
  """Compares the long pass with the ordinary evaluation body on tokens [1, T]."""
  got, want = long.next_token_outputs(tokens), whole(tokens)
  x, update, length = long.residual_stream(tokens)
  net, start = long.net, max(0, length - CHECK_TAIL)
  logits = jax.jit(lambda x, u: net.logits(x[:, start:length], u[:, start:length]))
  ordinary = jax.jit(lambda t: net.logits(net.hidden_states(t)[:, start:]))
  difference = jnp.abs(logits(x, update) - ordinary(jnp.asarray(tokens)))
  return {
    "check_length": tokens.shape[1],
    "nll_long": float(got["nll"].mean()),
    "nll_ordinary": float(want["nll"].mean()),
    "nll_max_abs_diff": float(jnp.abs(got["nll"] - want["nll"]).max()),
    "argmax_agreement": float((got["argmax"] == want["argmax"]).mean()),
    "tail_logits_max_abs_diff": float(difference.max()),
    "tail_logits_mean_abs_diff": float(difference.mean()),
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--size", default="110m")
  parser.add_argument("--encoder", default="hope")
  parser.add_argument("--train_length", type=int, default=1024)
  parser.add_argument("--lengths", default="4096,16384,65536,131072")
  parser.add_argument("--attention_impl", default="auto", help="model.attention_impl")
  parser.add_argument(
    "--attention", default="auto", help="the long pass's kernel: auto, cudnn or blockwise"
  )
  parser.add_argument("--token_chunk", type=int, default=65536)
  parser.add_argument("--attention_block", type=int, default=2048)
  parser.add_argument("--logits_chunk", type=int, default=8192)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument(
    "--single_step_s",
    type=float,
    default=20.0,
    help="lengths whose first timed pass takes longer are timed once",
  )
  parser.add_argument("--bound_steps", type=int, default=3)
  parser.add_argument("--check_length", type=int, default=0, help="0 = no comparison")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  config = run_config(
    args.size,
    args.encoder,
    seq_len=args.train_length,
    batch_size=1,
    attention_impl=args.attention_impl,
  )
  cfg = resolve.resolve(config).model
  mesh = sharding.make_mesh(sharding.MeshConfig(data=1, fsdp=1), jax.devices()[:1])
  graphdef, state, _ = train_step.create_train_state(
    cfg, optax.identity(), mesh=mesh, rules=sharding.DEFAULT_RULES
  )
  options = long_forward.LongForwardOptions(
    token_chunk=args.token_chunk,
    attention_block=args.attention_block,
    logits_chunk=args.logits_chunk,
    attention=args.attention,
  )
  long = long_forward.LongForward(
    graphdef,
    state.params,
    state.model_state,
    mesh=mesh,
    rules=sharding.DEFAULT_RULES,
    options=options,
  )
  base = {
    "size": args.size,
    "encoder": args.encoder,
    "params": model.num_params(cfg),
    "device": jax.devices()[0].device_kind,
    "attention": long.attention,
    "token_chunk": args.token_chunk,
  }
  rng = np.random.default_rng(0)
  for length in map(int, args.lengths.split(",")):
    tokens = rng.integers(0, cfg.vocab_size, (1, length), dtype=np.int32)
    run = functools.partial(long.next_token_outputs, tokens)
    try:
      start = time.perf_counter()
      long.warm_up(tokens)
      warm_up_s = time.perf_counter() - start
      times = time_steps(run, warmup=0, steps=1)
      if times[0] < args.single_step_s:
        times += time_steps(run, warmup=0, steps=args.steps - 1)
      stats = summary(times)
      peak = peak_gib()
      padded = options.plan(length - 1)[0]
      layer_ms = cudnn_bound_ms(cfg, padded, args.bound_steps if len(times) > 1 else 1)
    except Exception as e:  # pylint: disable=broad-except
      write_json(
        args.out, {**base, "length": length, "error": f"{type(e).__name__}: {str(e)[:300]}"}
      )
      continue
    bound_ms = None if layer_ms is None else layer_ms * cfg.num_layers
    write_json(
      args.out,
      {
        **base,
        "length": length,
        **stats,
        "timed_steps": len(times),
        "warm_up_s": round(warm_up_s, 2),
        "tokens_per_s": round(length / (stats["step_ms"] / 1e3)),
        "peak_gib": peak,
        "bound_ms": bound_ms,
        "bound_layer_ms": layer_ms,
        "attention_share": None if bound_ms is None else round(bound_ms / stats["step_ms"], 3),
      },
    )
  if args.check_length:
    tokens = rng.integers(0, cfg.vocab_size, (1, args.check_length), dtype=np.int32)
    whole = forward.compile_body(
      functools.partial(forward.next_token_outputs, chunk_tokens=args.logits_chunk),
      graphdef,
      state.params,
      state.model_state,
      mesh=mesh,
      rules=sharding.DEFAULT_RULES,
    )
    write_json(args.out, {**base, **check(long, whole, tokens)})


if __name__ == "__main__":
  main()
