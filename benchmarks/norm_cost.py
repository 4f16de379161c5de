"""Cost of the fused residual add + RMSNorm as a standalone op: XLA vs the Pallas kernels.

    python3 benchmarks/norm_cost.py --batch 16 --seq 4096 --dim 768

Times jitted ``fused_norm`` implementations on bf16 [B, T, d] activations, forward alone and
forward + backward (outputs and the VJP with both outputs' cotangents), as the mean over calls issued back to
back, and reports the achieved bandwidth against the least traffic the op needs: forward reads
x and update and writes s and n (4 arrays); the backward then reads s and both cotangents and
writes the gradient (4 more).  It also prints the largest difference between the two
implementations' outputs and gradients.  ``--sweep 64x4x4,16x4x4`` then times the Pallas
forward + backward for other backward kernel shapes (rows per program × rows per chunk × warps).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from common import time_pipelined, write_json  # noqa: I001

from hope_jax.kernels import norm as fused_norm


def _gradients(op, x, update, scale, ds, dn):
  """Outputs and gradients of op; x's and update's gradients are one array, so only x's is kept
  (returning both would add a copy that no model pays)."""
  outputs, vjp = jax.vjp(op, x, update, scale)
  dx, _, dscale = vjp((ds, dn))
  return (*outputs, dx, dscale)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--seq", type=int, default=4096)
  parser.add_argument("--dim", type=int, default=768)
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument(
    "--sweep", default="", help="backward shapes ROWSxCHUNKxWARPS, comma-separated"
  )
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  shape = (args.batch, args.seq, args.dim)
  keys = jax.random.split(jax.random.key(0), 4)
  x, update, ds, dn = (jax.random.normal(k, shape, jnp.bfloat16) for k in keys)
  scale = 1.0 + 0.1 * jax.random.normal(jax.random.key(1), (args.dim,), jnp.float32)
  unit = x.size * x.dtype.itemsize
  results = {}
  for impl in ("xla", "pallas"):
    op = jax.tree_util.Partial(fused_norm.IMPLEMENTATIONS[impl], eps=1e-6, out_dtype=jnp.bfloat16)
    forward = jax.jit(lambda x, u, w, op=op: op(x, u, w))
    both = jax.jit(lambda x, u, w, op=op: _gradients(op, x, u, w, ds, dn))
    results[impl] = both(x, update, scale)
    for name, fn, arrays in (("forward", forward, 4), ("forward+backward", both, 8)):
      ms = 1e3 * time_pipelined(lambda fn=fn: fn(x, update, scale), steps=args.steps)
      write_json(
        args.out,
        {
          "impl": impl,
          "pass": name,
          "shape": list(shape),
          "ms": round(ms, 4),
          "gb_per_s": round(arrays * unit / (ms / 1e3) / 1e9, 1),
          "device": jax.devices()[0].device_kind,
        },
      )
  names = ("s", "n", "dx", "dscale")
  diffs = {
    name: float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))
    for name, a, b in zip(names, results["xla"], results["pallas"])
  }
  write_json(args.out, {"max_abs_difference_xla_vs_pallas": diffs})
  op = jax.tree_util.Partial(fused_norm.pallas_add_rms_norm, eps=1e-6, out_dtype=jnp.bfloat16)
  for shape_ in filter(None, args.sweep.split(",")):
    rows, chunk, warps = map(int, shape_.split("x"))
    fused_norm.BACKWARD_ROWS, fused_norm.BACKWARD_CHUNK, fused_norm.BACKWARD_WARPS = (
      rows,
      chunk,
      warps,
    )
    both = jax.jit(lambda x, u, w: _gradients(op, x, u, w, ds, dn))  # traced anew: new shape
    ms = 1e3 * time_pipelined(lambda both=both: both(x, update, scale), steps=args.steps)
    write_json(
      args.out,
      {
        "impl": "pallas",
        "pass": "forward+backward",
        "backward": shape_,
        "shape": list(shape),
        "ms": round(ms, 4),
        "gb_per_s": round(8 * unit / (ms / 1e3) / 1e9, 1),
      },
    )


if __name__ == "__main__":
  main()
