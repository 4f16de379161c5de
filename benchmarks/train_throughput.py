"""Training throughput of our train step next to the PyTorch peer, on the same device.

    python3 benchmarks/train_throughput.py --shapes 110m:1024x64,110m:2048x32 \
        --encoders rope,hope,nope --peer /path/to/torch_peer.py --out results.jsonl

For each shape (preset:seq_lenxbatch) it times our jitted, sharded train step (AdamW, clipping,
random tokens like the peer) for every encoder, runs the peer with the same shape in a subprocess,
and prints a table: tokens/s, step time (the mean over steps issued back to back, timed as the
peer times; the median of individually blocked steps is kept as blocked_step_ms), MFU against
989 TFLOP/s dense bf16 (FLOPs counted the peer's way: 6·N_nonembedding + 6·layers·T·d per
token), and our/peer ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
from common import (  # noqa: I001
  PEER_SHAPES,
  add_model_args,
  model_fields,
  parse_shape,
  run_config,
  set_projection_tiles,
  setup_run,
  summary,
  time_pipelined,
  time_steps,
  write_json,
)

from hope_jax import kernels, model
from hope_jax.kernels import projection
from hope_jax.training import setup as training_setup
from hope_jax.training import step as train_step

PEAK = 989e12


def build_step(
  size: str,
  encoder: str,
  seq_len: int,
  batch: int,
  *,
  mesh_axes: dict[str, int] | None = None,
  init_on: str = "host",
  **fields,
):
  """Returns (one, cfg, mesh): one() runs one train step on a fixed random batch, returning the loss.

  fields: model-config overrides (common.model_fields), e.g. attention_impl or logits_dtype.
  """
  config = run_config(size, encoder, seq_len=seq_len, batch_size=batch, **fields)
  config.mesh.update(mesh_axes or {})
  config.train.init_on = init_on
  run = setup_run(config)
  step_fn, tokens = step_and_batch(run, seq_len, batch)
  holder = {"state": run.state}

  def one():
    holder["state"], metrics = step_fn(holder["state"], tokens)
    return metrics["loss"]

  return one, run.model_config, run.mesh


def step_and_batch(run: training_setup.Run, seq_len: int, batch: int):
  """Returns the run's jitted train step and fixed random tokens [batch, seq_len + 1] on its mesh."""
  step_fn = train_step.make_train_step(
    run.graphdef, run.optimizer, mesh=run.mesh, state_shardings=run.shardings, rules=run.rules
  )
  tokens = np.random.default_rng(0).integers(
    0, run.model_config.vocab_size, (batch, seq_len + 1), dtype=np.int32
  )
  return step_fn, train_step.global_batch({"tokens": tokens}, run.mesh, run.rules)


def ours(
  size: str,
  encoder: str,
  seq_len: int,
  batch: int,
  *,
  steps: int,
  warmup: int,
  mesh_axes: dict[str, int] | None = None,
  init_on: str = "host",
  **fields,
) -> dict:
  """Times our train step; returns a record (fields: model-config overrides, as build_step)."""
  start = time.perf_counter()
  one, cfg, mesh = build_step(
    size, encoder, seq_len, batch, mesh_axes=mesh_axes, init_on=init_on, **fields
  )
  jax.block_until_ready(one())
  compile_s = time.perf_counter() - start
  blocked = summary(time_steps(one, warmup=warmup, steps=steps))
  stats = {
    "step_ms": 1e3 * time_pipelined(one, steps=steps),
    **{k.replace("step_ms", "blocked_step_ms"): v for k, v in blocked.items()},
  }
  tokens_per_s = batch * seq_len / (stats["step_ms"] / 1e3)
  flops = model.flops_per_token(cfg, seq_len) * tokens_per_s / jax.device_count()
  return {
    "impl": f"hope_jax-{encoder}",
    "size": size,
    "seq": seq_len,
    "batch": batch,
    **stats,
    "tokens_per_s": round(tokens_per_s),
    "mfu": round(flops / PEAK, 4),
    "devices": jax.device_count(),
    "device": jax.devices()[0].device_kind,
    "params": model.num_params(cfg),
    "rotated_bands": cfg.encoding.num_rotated_bands,
    **fields,
    "projection_resolved": kernels.select(
      "projection_impl",
      cfg.projection_impl,
      dtype=cfg.compute_jnp_dtype,
      layout=cfg.encoding.layout,
      rotates=cfg.encoding.rotates,
      tiling_problem=None,
    ),
    "projection_tiles": str(projection.DEFAULT_TILES),
    "layout": cfg.encoding.layout,
    "mesh": dict(mesh.shape),
    "init_on": init_on,
    "setup_and_compile_s": round(compile_s, 1),
    "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }


def peer(path: str, size: str, seq_len: int, batch: int, *, steps: int) -> dict | None:
  """Runs the PyTorch peer with the same shape; returns its JSON line (or None on failure)."""
  s = PEER_SHAPES[size]
  cmd = [
    sys.executable,
    path,
    "--layers",
    str(s["layers"]),
    "--dim",
    str(s["dim"]),
    "--heads",
    str(s["heads"]),
    "--ff",
    str(s["ff"]),
    "--seq",
    str(seq_len),
    "--batch",
    str(batch),
    "--vocab",
    "16384",
    "--steps",
    str(steps),
  ]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    print(proc.stderr[-2000:], file=sys.stderr)
    return None
  return {"size": size, **json.loads(proc.stdout.strip().splitlines()[-1])}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shapes", default="110m:1024x64,110m:2048x32,110m:4096x16,340m:2048x32")
  parser.add_argument("--encoders", default="rope,hope")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--warmup", type=int, default=5)
  parser.add_argument("--peer", default="", help="path to torch_peer.py; empty = no peer")
  add_model_args(parser)
  parser.add_argument("--init_on", default="host", help="train.init_on: device or host")
  parser.add_argument("--mesh", default="", help="e.g. data=2,fsdp=2 (default: data over all)")
  parser.add_argument(
    "--batch_per_device", action="store_true", help="the shape's batch is per device (weak scaling)"
  )
  parser.add_argument("--out", default="")
  args = parser.parse_args()
  set_projection_tiles(args)
  if args.peer and args.batch_per_device:
    parser.error("--peer runs on one GPU; leave it out with --batch_per_device")
  shapes = [parse_shape(shape) for shape in args.shapes.split(",")]
  # Every peer runs before JAX starts: JAX then holds most of the GPU's memory until exit.
  references = {}
  for size, seq_len, batch in shapes:
    references[size, seq_len, batch] = (
      peer(args.peer, size, seq_len, batch, steps=30) if args.peer else None
    )
    if references[size, seq_len, batch]:
      write_json(args.out, references[size, seq_len, batch])
  rows = []
  for size, seq_len, batch in shapes:
    reference = references[size, seq_len, batch]
    if args.batch_per_device:
      batch *= jax.device_count()
    for encoder in args.encoders.split(","):
      mesh_axes = {k: int(v) for k, v in (p.split("=") for p in args.mesh.split(",") if p)}
      try:
        record = ours(
          size,
          encoder,
          seq_len,
          batch,
          steps=args.steps,
          warmup=args.warmup,
          mesh_axes=mesh_axes,
          init_on=args.init_on,
          **model_fields(args),
        )
      except jax.errors.JaxRuntimeError as e:  # e.g. out of memory: report it, go on
        write_json(
          args.out,
          {
            "impl": f"hope_jax-{encoder}",
            "size": size,
            "seq": seq_len,
            "batch": batch,
            "error": str(e).splitlines()[0][:300],
          },
        )
        continue
      if reference:
        record["peer_tokens_per_s"] = reference["tokens_per_s"]
        record["ratio"] = round(record["tokens_per_s"] / reference["tokens_per_s"], 3)
      write_json(args.out, record)
      rows.append((record, reference))
  print("\n| shape | impl | tokens/s | step ms | MFU | peer tokens/s | ours/peer |")
  print("|---|---|---|---|---|---|---|")
  for record, reference in rows:
    print(
      f"| {record['size']} {record['seq']}×{record['batch']} | {record['impl']} | "
      f"{record['tokens_per_s']:,} | {record['step_ms']:.1f} | {record['mfu']:.1%} | "
      f"{reference['tokens_per_s']:,} | {record['ratio']:.2f} |"
      if reference
      else f"| {record['size']} {record['seq']}×{record['batch']} | {record['impl']} | "
      f"{record['tokens_per_s']:,} | {record['step_ms']:.1f} | {record['mfu']:.1%} | — | — |"
    )


if __name__ == "__main__":
  main()
