"""``python -m hope_jax demo``: RoPE against HoPE beyond the training length, measured on this machine.

By default the demo evaluates the two shipped pretrained models (``hope_jax/assets/demo``: trained
at L = 128 with ``configs/demo.py``, provenance in the README there) on the embedded
validation text at 1…32 × L, on the CPU, then prints the table and the ratio at the longest length
and writes a PNG.  ``--from_scratch`` trains two tiny models here instead (a few minutes), which
shows the runner itself at work.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import os
import sys
import time

import ml_collections

from hope_jax.config import base as config_base
from hope_jax.config import commands, identity
from hope_jax.evaluation import tables
from hope_jax.interop import released

DEMO_ENCODERS = ("rope", "hope")
LENGTHS = (1, 2, 4, 8, 16, 32)
MAX_WINDOWS = 8

INTRO = (
  "Two small models, RoPE and HoPE, identical but for the encoder and trained at L = {L} tokens, "
  "evaluated now on text neither trained on, at 1 to {n} × L.\n"
  "Past L, RoPE's slow bands turn to angles never seen in training; HoPE leaves those bands "
  "unrotated, so its perplexity should rise far less than RoPE's."
)


def release_dir(encoder: str) -> str:
  """The shipped pretrained release of an encoder (hope_jax/assets/demo/<encoder>)."""
  return str(importlib.resources.files("hope_jax") / "assets" / "demo" / encoder)


def _evaluation_settings(
  config: ml_collections.ConfigDict, lengths: tuple[int, ...], max_windows: int
) -> ml_collections.ConfigDict:
  """The config with the demo's evaluation: perplexity at ``lengths`` × L, float32 on any host."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.eval.evaluations = ("perplexity",)
  config.eval.perplexity.lengths = tuple(lengths)
  config.eval.perplexity.max_windows = max_windows
  config.eval.batch_tokens = 16384
  config.train.tensorboard = False
  config.lock()
  return config


def pretrained_config(encoder: str, lengths=LENGTHS, max_windows=MAX_WINDOWS):
  """The shipped release's config with the demo's evaluation settings, on the embedded text."""
  with open(os.path.join(release_dir(encoder), released.CONFIG_FILE), encoding="utf-8") as f:
    saved = json.load(f)
  # Whatever the release was trained on, the demo reads the validation text inside the package.
  saved["data"].update(source="embedded", path="")
  return _evaluation_settings(ml_collections.ConfigDict(saved), lengths, max_windows)


def scratch_config(encoder: str, lengths=(1, 2, 4, 8), max_windows=48, steps: int = 300):
  """A 2-layer, 128-wide model at L = 64 trained here for ``steps`` steps (``--from_scratch``)."""
  config = config_base.base_config()
  config_base.set_model_size(config, "tiny")
  config_base.set_encoder(config, encoder)
  config.data.seq_len = 64
  config.train.update(
    dict(
      steps=steps,
      batch_size=16,
      learning_rate=3e-3,
      warmup_steps=max(1, steps // 10),
      log_every=max(1, steps // 6),
      checkpoint_every=steps,
      keep_checkpoints=1,
    )
  )
  return _evaluation_settings(config, lengths, max_windows)


def measured_ratio(results: list[dict]) -> str | None:
  """The sentence comparing RoPE and HoPE at the longest length both were evaluated at."""
  by_encoder = {r["run"]["encoder"]: r for r in results}
  if set(by_encoder) != set(DEMO_ENCODERS):
    return None
  ppl = {
    e: {int(row["length"]): float(row["perplexity"]) for row in r["results"]}
    for e, r in by_encoder.items()
  }
  common = [n for n in ppl["rope"] if n in ppl["hope"] and math.isfinite(ppl["hope"][n])]
  if not common:
    return None
  n, train_length = max(common), int(by_encoder["hope"]["run"]["train_length"])
  rope, hope = ppl["rope"][n], ppl["hope"][n]
  return (
    f"Measured now, at {n // train_length} × L ({n:,} tokens): RoPE {rope:.1f}, HoPE {hope:.1f}; "
    f"RoPE's perplexity is {rope / hope:.2f} times HoPE's."
  )


def run_demo(
  workdir: str = "workdirs/demo",
  *,
  from_scratch: bool = False,
  lengths: tuple[int, ...] | None = None,
  max_windows: int | None = None,
  scratch_steps: int = 300,
  verbose: bool = True,
) -> str:
  """Evaluates (or, from scratch, trains) the demo's RoPE and HoPE models; returns the table."""
  start = time.perf_counter()
  run_dirs = []
  train_length = 0
  for encoder in DEMO_ENCODERS:
    if from_scratch:
      config = scratch_config(
        encoder, lengths or (1, 2, 4, 8), max_windows or 48, steps=scratch_steps
      )
      run_dir = os.path.join(workdir, "scratch", encoder)
      if verbose:
        print(f"== training {encoder} (L = {config.data.seq_len}) in {run_dir}", file=sys.stderr)
      commands.train(config, run_dir, verbose=verbose)
    else:
      config = pretrained_config(encoder, lengths or LENGTHS, max_windows or MAX_WINDOWS)
      run_dir = os.path.join(workdir, "pretrained", encoder)
      if not identity.has_checkpoints(run_dir):
        released.run_from_release(release_dir(encoder), run_dir, config=config)
    train_length = config.data.seq_len
    if verbose:
      print(f"== evaluating {encoder} in {run_dir}", file=sys.stderr)
    commands.evaluate(config, run_dir, verbose=verbose)
    run_dirs.append(os.path.join(run_dir, "eval"))
  out = os.path.join(workdir, "scratch_table.md" if from_scratch else "demo_table.md")
  markdown = tables.write_tables(run_dirs, out)
  factors = tuple(config.eval.perplexity.lengths)
  print(INTRO.format(L=train_length, n=max(factors)))
  print()
  print(markdown)
  sentence = measured_ratio(tables.load_results(run_dirs))
  if sentence:
    print(sentence)
  stem = os.path.splitext(out)[0]
  print(f"wrote {out}, {stem}.csv and {stem}.png ({time.perf_counter() - start:.0f} s)")
  return markdown
