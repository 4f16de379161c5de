"""The train and evaluate commands: resolve the ConfigDict once, check it against the run, run it.

A run's saved ``config.json`` is the record of what was trained: it is written when a run starts
(no checkpoint yet) and never overwritten afterwards; resuming or evaluating with a config that
changes the trained model is refused (:mod:`hope_jax.config.identity`).  Training holds an advisory
lock on the workdir, so two processes never train one run.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import jax

from hope_jax.config import identity
from hope_jax.config import resolve as resolve_lib
from hope_jax.evaluation import runner
from hope_jax.parallel import distributed as distributed_lib
from hope_jax.training import loop, workdir_lock


def save_config(config: Any, workdir: str) -> None:
  """Writes the ConfigDict as workdir/config.json (process 0)."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, identity.CONFIG_FILE), "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def train(config: Any, workdir: str, *, verbose: bool = True) -> dict:
  """Trains (or resumes) the run in workdir as the ConfigDict says; returns the loop's summary."""
  run = resolve_lib.resolve(config)
  distributed_lib.initialize_distributed(run.distributed)  # before any other jax call
  lock = workdir_lock.hold(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
  with lock:
    if identity.has_checkpoints(workdir):
      saved = identity.saved_run(workdir)
      if saved is not None:
        identity.check_matches(saved, run, workdir)
    else:
      save_config(config, workdir)
    return loop.train(
      run.model,
      run.mesh,
      run.data,
      run.train,
      run.optimizer,
      workdir=workdir,
      seed=run.seed,
      distributed=run.distributed,
      verbose=verbose,
    )


def evaluate(config: Any, workdir: str, *, verbose: bool = True) -> dict:
  """Runs the configured evaluations on the run in workdir; returns {name: result}.

  The model must be the one the run trained (its saved config); the checkpoint is restored with
  the run's own optimizer structure.
  """
  if not identity.has_checkpoints(workdir):
    raise FileNotFoundError(f"no run in workdir {workdir!r} (no checkpoint there); train first")
  run = resolve_lib.resolve(config)
  saved = identity.saved_run(workdir)
  if saved is not None:
    identity.check_matches(saved, run, workdir)
  optimizer = saved.optimizer if saved is not None else run.optimizer
  return runner.evaluate(
    run.eval,
    run.model,
    run.mesh,
    run.data,
    workdir=workdir,
    optimizer=optimizer,
    seed=saved.seed if saved is not None else run.seed,
    distributed=run.distributed,
    verbose=verbose,
  )
