"""Shared pieces of the benchmark scripts: model presets as run configs, timing, JSON output."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hope_jax.config import base as config_base  # noqa: E402
from hope_jax.config import resolve  # noqa: E402
from hope_jax.kernels import projection  # noqa: E402
from hope_jax.training import setup as training_setup  # noqa: E402

# The PyTorch peer's shapes (../shared/bench/torch_peer.py): SwiGLU widths and heads per preset.
PEER_SHAPES = {
  "110m": dict(layers=12, dim=768, heads=12, ff=2048),
  "340m": dict(layers=24, dim=1024, heads=16, ff=2816),
}


def parse_shape(shape: str) -> tuple[str, int, int]:
  """Splits a "preset:seq_lenxbatch" shape (``110m:1024x64``) into (preset, seq_len, batch)."""
  size, dims = shape.split(":")
  seq_len, batch = map(int, dims.split("x"))
  return size, seq_len, batch


def run_config(
  size: str,
  encoder: str,
  *,
  seq_len: int,
  batch_size: int,
  encoder_params: dict[str, Any] | None = None,
  **model_fields,
):
  """Returns a run config for a preset at a sequence length and global batch size (bf16)."""
  config = config_base.accelerator_config(
    size, encoder, seq_len=seq_len, batch_size=batch_size, learning_rate=3e-3, steps=1000
  )
  config.train.warmup_steps = 10
  config.model.update(model_fields)
  config.model.encoder_params.update(encoder_params or {})
  return config


def setup_run(config) -> training_setup.Run:
  """Resolves a run config and builds its mesh and fresh sharded state (no workdir)."""
  return resolve.resolve(config).setup()


def add_model_args(parser: argparse.ArgumentParser) -> None:
  """Adds the model-config flags every train-step benchmark takes (see model_fields)."""
  parser.add_argument("--attention_impl", default="auto")
  parser.add_argument("--remat", default="none")
  parser.add_argument("--norm_impl", default="auto", help="model.norm_impl: auto, xla or pallas")
  parser.add_argument("--logits_dtype", default="float32", help="model.logits_dtype")
  parser.add_argument("--loss_impl", default="auto", help="model.loss_impl: auto, xla or pallas")
  parser.add_argument(
    "--projection_impl",
    default="auto",
    help="model.projection_impl: auto, xla or pallas (rotation in the q/k product)",
  )
  parser.add_argument(
    "--projection_tiles",
    default="",
    help="overrides of the fused projection's default TileConfig, e.g. "
    "grid_tile_width=6 (applied by set_projection_tiles)",
  )
  parser.add_argument(
    "--encoder_params",
    default="",
    help="model.encoder_params for every encoder, e.g. layout=interleaved",
  )


def model_fields(args: argparse.Namespace) -> dict[str, Any]:
  """Returns the model-config overrides of add_model_args' flags, for run_config."""
  params = {}
  for item in filter(None, args.encoder_params.split(",")):
    name, value = item.split("=", 1)
    try:  # numbers and None as Python literals (num_kept_bands=16, base=5e5); words as strings
      params[name] = ast.literal_eval(value)
    except (ValueError, SyntaxError):
      params[name] = value
  return {
    "attention_impl": args.attention_impl,
    "remat": args.remat,
    "norm_impl": args.norm_impl,
    "logits_dtype": args.logits_dtype,
    "loss_impl": args.loss_impl,
    "projection_impl": args.projection_impl,
    "encoder_params": params,
  }


def add_projection_args(parser: argparse.ArgumentParser) -> None:
  """Adds the q/k projection's shape flags: [tokens, embed] @ [embed, heads · head_dim]."""
  parser.add_argument("--tokens", type=int, default=65536)
  parser.add_argument("--embed", type=int, default=768)
  parser.add_argument("--heads", type=int, default=12)
  parser.add_argument("--head_dim", type=int, default=64)


def parse_overrides(text: str, default):
  """'tile_m=128,minor_n=False,grid_tile_width=8' -> the dataclass default with those fields
  replaced (True/False as booleans, numbers as ints, anything else as a string)."""

  def value_of(text: str):
    if text in ("True", "False"):
      return text == "True"
    return int(text) if text.lstrip("-").isdigit() else text

  fields = dict(item.split("=") for item in text.split(",") if item)
  return dataclasses.replace(default, **{name: value_of(v) for name, v in fields.items()})


def set_projection_tiles(args: argparse.Namespace) -> None:
  """Makes --projection_tiles the fused projection's default tiling in this process."""
  if args.projection_tiles:
    projection.DEFAULT_TILES = parse_overrides(args.projection_tiles, projection.DEFAULT_TILES)


def time_steps(fn: Callable[[], Any], *, warmup: int, steps: int) -> list[float]:
  """Calls fn warmup times, then times each of `steps` calls (blocking on the result)."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return times


def time_pipelined(fn: Callable[[], Any], *, steps: int) -> float:
  """Mean seconds per call over `steps` calls issued back to back, blocking only on the last.

  This is how the PyTorch peer times (and how the training loop runs): the host queues the next
  step while the device works, so dispatch latency is hidden as it is in training.
  """
  jax.block_until_ready(fn())
  start = time.perf_counter()
  result = None
  for _ in range(steps):
    result = fn()
  jax.block_until_ready(result)
  return (time.perf_counter() - start) / steps


def summary(times: list[float]) -> dict[str, float]:
  """Median and spread of step times, in ms."""
  return {
    "step_ms": 1e3 * statistics.median(times),
    "step_ms_min": 1e3 * min(times),
    "step_ms_max": 1e3 * max(times),
  }


def write_json(path: str | None, record: Any) -> None:
  """Appends one JSON record to path (if given) and prints it."""
  line = json.dumps(record)
  print(line, flush=True)
  if path:
    with open(path, "a", encoding="utf-8") as f:
      f.write(line + "\n")
