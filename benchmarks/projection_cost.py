"""Cost of the q/k projection with its rotation: XLA's product then rotation pass against the fused kernel.

    python3 benchmarks/projection_cost.py --tokens 65536 --embed 768 --heads 12 --head_dim 64

Times ``--repeat`` (12, one per layer) projections of one bf16 [tokens, embed] input by separate
[embed, heads · head_dim] weights, each output kept (as attention keeps q and k), forward alone
and forward + backward.  Rows: ``matmul`` (the product alone: the floor), ``xla`` (product, then
the rotation pass: the model's ``projection_impl="xla"``), ``mgpu_matmul`` (JAX's Hopper Mosaic
GPU matmul that the fused kernel copies, no rotation; also with CTA pairs along M sharing the
weight's tile by TMA multicast), and ``pallas`` with each ``--tiles``
(``projection.rotary_matmul``).  It also prints the largest difference between ``pallas`` and ``xla``.
"""

from __future__ import annotations

import argparse
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from common import add_projection_args, parse_overrides, summary, time_steps, write_json  # noqa: I001

from hope_jax.kernels import projection as rp
from hope_jax.positional import encoders


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  add_projection_args(parser)
  parser.add_argument("--train_length", type=int, default=4096, help="HoPE's L")
  parser.add_argument("--repeat", type=int, default=12)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--tiles", nargs="*", default=[""], help="TileConfig overrides per row")
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  m, d, n, hd = args.tokens, args.embed, args.heads * args.head_dim, args.head_dim
  keys = jax.random.split(jax.random.key(0), args.repeat + 1)
  x = jax.random.normal(keys[0], (m, d), jnp.bfloat16)
  ws = jnp.stack([jax.random.normal(k, (d, n), jnp.float32) / np.sqrt(d) for k in keys[1:]])
  ws = ws.astype(jnp.bfloat16)
  freqs = encoders.hope_frequencies(hd, train_length=args.train_length)
  positions = jnp.arange(m, dtype=jnp.int32) % args.train_length
  cos, sin, rotating = encoders.rotation_cos_sin(positions, freqs)

  def xla_op(x, w, cos, sin):
    return rp.xla_rotary_matmul(x, w, cos, sin, head_dim=hd, rotating=rotating)

  cases = {"matmul": lambda x, w, cos, sin: x @ w, "xla": xla_op}
  try:
    from jax.experimental.pallas.ops.gpu import hopper_matmul_mgpu as hm

    config = hm.TuningConfig(tile_m=128, tile_n=128, tile_k=64, max_concurrent_steps=4)
    cases["mgpu_matmul"] = lambda x, w, cos, sin: hm.matmul(x, w, None, config)
    clustered = dataclasses.replace(config, cluster_dimension=hm.MatmulDimension.M)
    cases["mgpu_matmul[cluster M]"] = lambda x, w, cos, sin: hm.matmul(x, w, None, clustered)
  except ImportError:
    pass
  for text in args.tiles:
    tiles = parse_overrides(text, rp.DEFAULT_TILES)
    cases[f"pallas[{text}]"] = (
      lambda t: (
        lambda x, w, cos, sin: rp.rotary_matmul(
          x, w, cos, sin, head_dim=hd, rotating=rotating, impl="pallas", tiles=t
        )
      )
    )(tiles)

  flops = 2 * m * d * n * args.repeat
  reference = jax.jit(xla_op)(x, ws[0], cos, sin)
  grads = jnp.ones((m, n), jnp.bfloat16)
  for name, op in cases.items():
    forward = jax.jit(
      lambda x, ws, cos, sin, op=op: [op(x, ws[i], cos, sin) for i in range(args.repeat)]
    )

    def both(x, ws, cos, sin, grads, op=op):
      outs, pulls = [], []
      for i in range(args.repeat):
        out, pull = jax.vjp(lambda x, w: op(x, w, cos, sin), x, ws[i])
        outs.append(out)
        pulls.append(pull(grads))
      return outs, pulls

    record = {
      "case": name,
      "tokens": m,
      "embed": d,
      "n": n,
      "repeat": args.repeat,
      "device": jax.devices()[0].device_kind,
      "jax": jax.__version__,
    }
    try:
      if name.startswith("pallas"):
        record["max_abs_diff_vs_xla"] = float(
          jnp.max(
            jnp.abs(forward(x, ws, cos, sin)[0].astype(jnp.float32) - reference.astype(jnp.float32))
          )
        )
      fwd = summary(
        time_steps(lambda forward=forward: forward(x, ws, cos, sin), warmup=2, steps=args.steps)
      )
      record["forward_ms_per_op"] = fwd["step_ms"] / args.repeat
      record["forward_tflops"] = flops / (fwd["step_ms"] * 1e-3) / 1e12
      if not name.startswith("mgpu_matmul"):
        fb = jax.jit(both)
        total = summary(
          time_steps(lambda fb=fb: fb(x, ws, cos, sin, grads), warmup=2, steps=args.steps)
        )
        record["fwd_bwd_ms_per_op"] = total["step_ms"] / args.repeat
    except Exception as e:  # noqa: BLE001 - a tiling that fails is a row, not the end of the run
      record["error"] = f"{type(e).__name__}: {str(e)[:300]}"
    write_json(args.out, record)


if __name__ == "__main__":
  main()
