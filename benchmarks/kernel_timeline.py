"""Where the fused q/k projection kernel spends its time: Mosaic GPU's per-warpgroup timeline.

    python3 benchmarks/kernel_timeline.py --tokens 65536 --embed 768 --heads 12 --out DIR

Runs ``rotary_kernel.pallas_rotary_matmul`` once, just compiled, with Mosaic GPU's profiler
on (a Hopper GPU), which writes a Chrome trace of every consumer warpgroup's "product" (the
pipelined WGMMA loop) and "epilogue" (rotation and stores) regions, one pair per output tile.
Prints, per region, the mean duration per tile and its share of the warpgroups' time, the gap
between one tile's epilogue and the next tile's product, and the warpgroups' span; times are in
thousands of SM clock cycles.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from common import add_projection_args, parse_overrides, write_json  # noqa: I001
from hope_jax.positional import encoders
from hope_jax.kernels import rotary_kernel as rk


def regions(trace: dict) -> dict[int, list[tuple[str, float, float]]]:
  """Returns each warpgroup's (tid's) regions as (name, begin, end), in order."""
  open_at, out = {}, collections.defaultdict(list)
  for event in trace["traceEvents"]:
    key = (event["tid"], event["name"])
    if event["ph"] == "B":
      open_at[key] = event["ts"]
    else:
      out[event["tid"]].append((event["name"], open_at.pop(key), event["ts"]))
  return {tid: sorted(spans, key=lambda span: span[1]) for tid, spans in out.items()}


def summarize(per_wg: dict[int, list[tuple[str, float, float]]]) -> dict:
  """Mean region length per tile, shares of the warpgroups' busy span, gaps between tiles."""
  totals, counts, gaps, spans = collections.Counter(), collections.Counter(), [], []
  consumers = [seq for seq in per_wg.values() if any(name == "product" for name, _, _ in seq)]
  for seq in consumers:  # the producer warpgroup has only Pallas' own "Init" region
    spans.append(seq[-1][2] - seq[0][1])
    for (name, begin, end), nxt in zip(seq, seq[1:] + [None]):
      totals[name] += end - begin
      counts[name] += 1
      if name == "epilogue" and nxt is not None:
        gaps.append(nxt[1] - end)
  busy = sum(spans)
  record = {f"{name}_per_tile": totals[name] / counts[name] for name in totals}
  record.update({f"{name}_share": totals[name] / busy for name in totals})
  record["gap_between_tiles"] = float(np.mean(gaps)) if gaps else 0.0
  record["tiles_per_warpgroup"] = counts["product"] / max(len(consumers), 1)
  record["warpgroup_span"] = float(np.mean(spans))
  return record


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  add_projection_args(parser)
  parser.add_argument("--tiles", default="", help="TileConfig overrides")
  parser.add_argument("--out", required=True, help="folder for the traces and timeline.jsonl")
  args = parser.parse_args()
  m, d, n, hd = args.tokens, args.embed, args.heads * args.head_dim, args.head_dim
  tiles = parse_overrides(args.tiles, rk.DEFAULT_TILES)
  x = jax.random.normal(jax.random.key(0), (m, d), jnp.bfloat16)
  w = (jax.random.normal(jax.random.key(1), (d, n), jnp.float32) / np.sqrt(d)).astype(jnp.bfloat16)
  cos, sin, _ = encoders.rotation_cos_sin(jnp.arange(m, dtype=jnp.int32),
                                          encoders.rope_frequencies(hd))
  # Mosaic GPU names a trace after the kernel and never overwrites one: a fresh folder per run,
  # and one call (further calls of the same kernel would write nothing).
  trace_dir = os.path.join(args.out, f"traces-{time.time_ns()}")
  os.makedirs(trace_dir)
  call = jax.jit(lambda x, w, cos, sin: rk.pallas_rotary_matmul(
      x, w, cos, sin, head_dim=hd, tiles=tiles, profile_dir=trace_dir))
  jax.block_until_ready(call(x, w, cos, sin))
  (trace,) = glob.glob(os.path.join(trace_dir, "*-trace.json"))
  with open(trace) as f:
    record = {"tokens": m, "embed": d, "n": n, "tiles": str(tiles), "trace": trace,
              "device": jax.devices()[0].device_kind, **summarize(regions(json.load(f)))}
  write_json(os.path.join(args.out, "timeline.jsonl"), record)


if __name__ == "__main__":
  main()
