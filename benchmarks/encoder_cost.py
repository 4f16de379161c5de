"""Cost of the positional encoders as a standalone op: HoPE vs RoPE vs NoPE.

    python3 benchmarks/encoder_cost.py --batch 16 --seq 4096 --heads 12 --head_dim 64

Times a jitted chain of ``--repeat`` rotations of a bf16 [B, T, H, D] tensor, as the train step
rotates q or k once per layer: the sin/cos of the positions are computed once and shared, and an
optimisation barrier after each rotation keeps XLA from fusing the chain into one pass.  The input
buffer is donated and each call's output feeds the next.  Each row reports the time per rotation
and the bandwidth of a pass over the tensor at that time (its bytes read + written), next to a
plain elementwise pass (a negation) chained the same way.  The step-time difference inside the
full train step comes from train_throughput.py with --encoders rope,hope,nope.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from common import summary, time_steps, write_json  # noqa: I001

from hope_jax.positional import encoders


def chain(rotate, repeat: int):
  """Returns a jitted, input-donating fn(x, positions) applying rotate(x, positions) repeat times."""

  def run(x, positions):
    for _ in range(repeat):
      x = jax.lax.optimization_barrier(rotate(x, positions))
    return x

  return jax.jit(run, donate_argnums=0)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--seq", type=int, default=4096)
  parser.add_argument("--heads", type=int, default=12)
  parser.add_argument("--head_dim", type=int, default=64)
  parser.add_argument("--train_length", type=int, default=0, help="HoPE's L; 0 = --seq")
  parser.add_argument("--repeat", type=int, default=12, help="rotations per call (layers)")
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  shape = (args.batch, args.seq, args.heads, args.head_dim)
  x = jax.random.normal(jax.random.key(0), shape, jnp.bfloat16)
  positions = jnp.broadcast_to(jnp.arange(args.seq, dtype=jnp.int32), shape[:2])
  length = args.train_length or args.seq
  cases = {  # None = the plain pass
    "negate": None,
    "nope": encoders.nope_frequencies(args.head_dim),
    "hope": encoders.hope_frequencies(args.head_dim, train_length=length),
    "rope": encoders.rope_frequencies(args.head_dim),
  }
  bytes_moved = 2 * x.size * x.dtype.itemsize
  rows = []
  for name, freqs in cases.items():
    if freqs is None:
      op = lambda x, p: -x
    else:
      op = lambda x, p, freqs=freqs: encoders.apply_rotary(x, p, freqs)
    fn, holder = chain(op, args.repeat), {"x": x.copy()}

    def call(fn=fn, holder=holder):
      holder["x"] = fn(holder["x"], positions)
      return holder["x"]

    stats = summary(time_steps(call, warmup=3, steps=args.steps))
    ms = stats["step_ms"] / args.repeat
    record = {
      "op": name,
      "shape": list(shape),
      "repeat": args.repeat,
      **stats,
      "ms_per_rotation": round(ms, 4),
      "gb_per_s": round(bytes_moved / (ms / 1e3) / 1e9, 1),
      "rotated_bands": -1 if freqs is None else int((freqs > 0).sum()),
      "device": jax.devices()[0].device_kind,
    }
    write_json(args.out, record)
    rows.append(record)
  base = rows[0]["ms_per_rotation"]
  print("\n| op | rotated bands | ms per rotation | GB/s | × negate |")
  print("|---|---|---|---|---|")
  for r in rows:
    bands = r["rotated_bands"] if r["rotated_bands"] >= 0 else "—"
    print(
      f"| {r['op']} | {bands} | {r['ms_per_rotation']:.4f} | {r['gb_per_s']:,} | "
      f"{r['ms_per_rotation'] / base:.2f} |"
    )


if __name__ == "__main__":
  main()
