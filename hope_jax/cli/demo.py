"""``python -m hope_jax demo``: trains a tiny RoPE and a tiny HoPE model on the embedded corpus on the
CPU, evaluates perplexity at 1×, 2×, 4× and 8× the training length, prints the table and writes a
PNG plot.  Real training and real numbers; a few minutes on a laptop.
"""

from __future__ import annotations

import os
import sys
import time

import ml_collections

from hope_jax.config import base as config_base
from hope_jax.config import commands
from hope_jax.evaluation import tables

DEMO_ENCODERS = ("rope", "hope")


def demo_config(encoder: str) -> ml_collections.ConfigDict:
  """The demo's config: a 2-layer, 128-wide model at training length 64 on the embedded corpus."""
  config = config_base.base_config()
  config_base.set_model_size(config, "tiny")
  config_base.set_encoder(config, encoder)
  config.data.seq_len = 64
  config.train.update(
    dict(
      steps=300,
      batch_size=16,
      learning_rate=3e-3,
      warmup_steps=30,
      log_every=50,
      checkpoint_every=300,
      keep_checkpoints=1,
      tensorboard=False,
    )
  )
  config.eval.update(dict(batch_tokens=8192, evaluations=("perplexity",)))
  config.eval.perplexity.update(dict(lengths=(1, 2, 4, 8), max_windows=48))
  config.lock()
  return config


def run_demo(workdir: str = "workdirs/demo", *, verbose: bool = True) -> str:
  """Trains and evaluates the demo models under workdir; returns the markdown table."""
  start = time.perf_counter()
  run_dirs = []
  for encoder in DEMO_ENCODERS:
    config = demo_config(encoder)
    run_dir = os.path.join(workdir, encoder)
    if verbose:
      print(f"== training {encoder} (L = {config.data.seq_len}) in {run_dir}", file=sys.stderr)
    commands.train(config, run_dir, verbose=verbose)
    commands.evaluate(config, run_dir, verbose=verbose)
    run_dirs.append(run_dir)
  out = os.path.join(workdir, "demo_table.md")
  markdown = tables.write_tables(run_dirs, out)
  print(markdown)
  print(
    f"wrote {out}, {os.path.splitext(out)[0]}.csv and {os.path.splitext(out)[0]}.png "
    f"({time.perf_counter() - start:.0f} s)"
  )
  return markdown
