"""The train and evaluate commands: resolve the ConfigDict once, record it, run the layers below."""

from __future__ import annotations

import os
from typing import Any

import jax

from hope_jax.config import resolve as resolve_lib
from hope_jax.evaluation import runner
from hope_jax.training import loop

CONFIG_FILE = "config.json"


def save_config(config: Any, workdir: str) -> None:
  """Writes the ConfigDict as workdir/config.json (process 0)."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, CONFIG_FILE), "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def train(config: Any, workdir: str, *, verbose: bool = True) -> dict:
  """Trains (or resumes) the run in workdir as the ConfigDict says; returns the loop's summary."""
  run = resolve_lib.resolve(config)
  save_config(config, workdir)
  return loop.train(run.model, run.mesh, run.data, run.train, run.optimizer, workdir=workdir,
                    seed=run.seed, distributed=run.distributed, verbose=verbose)


def evaluate(config: Any, workdir: str, *, verbose: bool = True) -> dict:
  """Runs the configured evaluations on the run in workdir; returns {name: result}."""
  run = resolve_lib.resolve(config)
  return runner.evaluate(run.eval, run.model, run.mesh, run.data, workdir=workdir,
                         optimizer=run.optimizer, seed=run.seed, distributed=run.distributed,
                         verbose=verbose)
