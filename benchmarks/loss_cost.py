"""Cost of the token loss as a standalone op: the XLA forward reduction vs the one-pass Pallas one.

    python3 benchmarks/loss_cost.py --batch 16 --seq 4096 --vocab 16384

Times jitted ``kernels.token_nll`` on bf16 (or ``--dtype float32``) logits [B, T, V], forward
alone and forward + backward, for each ``fused_loss`` implementation, as the mean over calls
issued back to back, and reports the achieved bandwidth against the least traffic: the forward
reads the logits once; the backward reads them again and writes their gradient.  It prints the
largest difference between the implementations' NLLs.  ``--sweep 4x1024x4,8x512x4`` then times
the Pallas forward for other kernel shapes (rows per program × vocabulary chunk × warps).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from common import time_pipelined, write_json  # noqa: I001

from hope_jax import kernels
from hope_jax.kernels import loss as fused_loss


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--seq", type=int, default=4096)
  parser.add_argument("--vocab", type=int, default=16384)
  parser.add_argument("--dtype", default="bfloat16")
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--sweep", default="", help="kernel shapes ROWSxCHUNKxWARPS, comma-separated")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  shape = (args.batch, args.seq, args.vocab)
  logits = 4 * jax.random.normal(jax.random.key(0), shape, jnp.dtype(args.dtype))
  labels = jax.random.randint(jax.random.key(1), shape[:2], 0, args.vocab, jnp.int32)
  unit = logits.size * logits.dtype.itemsize

  def loss_and_grad(x, impl):
    return jax.value_and_grad(lambda x: jnp.mean(kernels.token_nll(x, labels, impl)))(x)

  nll = {}
  record = {"shape": list(shape), "dtype": args.dtype, "device": jax.devices()[0].device_kind}
  for impl in ("xla", "pallas"):
    forward = jax.jit(lambda x, impl=impl: kernels.token_nll(x, labels, impl))
    both = jax.jit(lambda x, impl=impl: loss_and_grad(x, impl))
    nll[impl] = forward(logits)
    for name, fn, arrays in (("forward", forward, 1), ("forward+backward", both, 3)):
      ms = 1e3 * time_pipelined(lambda fn=fn: fn(logits), steps=args.steps)
      write_json(
        args.out,
        {
          "impl": impl,
          "pass": name,
          **record,
          "ms": round(ms, 4),
          "gb_per_s": round(arrays * unit / (ms / 1e3) / 1e9, 1),
        },
      )
  diff = float(np.max(np.abs(np.asarray(nll["xla"]) - np.asarray(nll["pallas"]))))
  write_json(args.out, {"max_abs_nll_difference_xla_vs_pallas": diff})
  for kernel in filter(None, args.sweep.split(",")):
    fused_loss.ROWS, fused_loss.CHUNK, fused_loss.WARPS = map(int, kernel.split("x"))
    forward = jax.jit(lambda x: kernels.token_nll(x, labels, "pallas"))  # traced anew
    ms = 1e3 * time_pipelined(lambda forward=forward: forward(logits), steps=args.steps)
    write_json(
      args.out,
      {
        "impl": "pallas",
        "pass": "forward",
        "kernel": kernel,
        **record,
        "ms": round(ms, 4),
        "gb_per_s": round(unit / (ms / 1e3) / 1e9, 1),
      },
    )


if __name__ == "__main__":
  main()
