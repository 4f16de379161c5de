"""Cost of the positional encoders as a standalone op: HoPE vs RoPE vs NoPE.

    python3 benchmarks/encoder_cost.py --batch 16 --seq 4096 --heads 12 --head_dim 64

Times jitted apply_rotary on a bf16 [B, T, H, D] tensor for each encoder and reports the achieved
bandwidth (the tensor's bytes read + written) next to a plain elementwise pass over the same
tensor.  The input buffer is donated and each call's output feeds the next, as the q/k projection's
output is consumed in the train step.  Here sin/cos are computed inside the rotation, once per
head; in the train step one [B, T, bands] computation serves every layer, q and k, forward and
backward.  The step-time difference inside the full train step comes from train_throughput.py
with --encoders rope,hope,nope.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

from common import summary, time_steps, write_json  # noqa: I001
from hope_jax import encoders


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--seq", type=int, default=4096)
  parser.add_argument("--heads", type=int, default=12)
  parser.add_argument("--head_dim", type=int, default=64)
  parser.add_argument("--train_length", type=int, default=0, help="HoPE's L; 0 = --seq")
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  shape = (args.batch, args.seq, args.heads, args.head_dim)
  x = jax.random.normal(jax.random.key(0), shape, jnp.bfloat16)
  positions = jnp.broadcast_to(jnp.arange(args.seq, dtype=jnp.int32), shape[:2])
  length = args.train_length or args.seq
  cases = {  # None = the plain pass
      "copy": None,
      "nope": encoders.nope_frequencies(args.head_dim),
      "hope": encoders.hope_frequencies(args.head_dim, train_length=length),
      "rope": encoders.rope_frequencies(args.head_dim),
  }
  bytes_moved = 2 * x.size * x.dtype.itemsize
  rows = []
  for name, freqs in cases.items():
    if freqs is None:
      op = lambda x, p: x * jnp.bfloat16(1) + jnp.bfloat16(0)  # a fused read + write
    else:
      op = functools.partial(encoders.apply_rotary, frequencies=freqs)
    fn = jax.jit(op, donate_argnums=0)
    holder = {"x": x.copy()}

    def call(fn=fn):
      holder["x"] = fn(holder["x"], positions)
      return holder["x"]

    stats = summary(time_steps(call, warmup=3, steps=args.steps))
    record = {"op": name, "shape": list(shape), **stats,
              "gb_per_s": round(bytes_moved / (stats["step_ms"] / 1e3) / 1e9, 1),
              "rotated_bands": -1 if freqs is None else int((freqs > 0).sum()),
              "device": jax.devices()[0].device_kind}
    write_json(args.out, record)
    rows.append(record)
  copy_ms = rows[0]["step_ms"]
  print("\n| op | rotated bands | time (ms) | GB/s | × copy time |")
  print("|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['op']} | {r['rotated_bands'] if r['rotated_bands'] >= 0 else '—'} | "
          f"{r['step_ms']:.3f} | {r['gb_per_s']:,} | {r['step_ms'] / copy_ms:.2f} |")


if __name__ == "__main__":
  main()
