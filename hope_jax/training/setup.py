"""The one setup path of training, evaluation and benchmarks: mesh, rules, optimizer, sharded state."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import optax

from hope_jax import model
from hope_jax.parallel import distributed as distributed_lib
from hope_jax.parallel import sharding
from hope_jax.training import checkpointing
from hope_jax.training import step as train_step


@dataclasses.dataclass
class Run:
  """Everything a training or evaluation run builds before its first step."""

  mesh: jax.sharding.Mesh
  rules: Any
  model_config: model.TransformerConfig
  optimizer: optax.GradientTransformation
  graphdef: Any
  state: Any
  shardings: Any
  checkpointer: checkpointing.Checkpointer | None  # None without a workdir (benchmarks)
  restored_step: int | None = None  # the checkpoint the state came from; None = fresh


def setup(
  model_config: model.TransformerConfig,
  mesh_config: sharding.MeshConfig,
  *,
  optimizer: optax.GradientTransformation,
  seed: int = 0,
  init_on: str = "host",
  batch_size: int | None = None,
  workdir: str | None = None,
  step: int | None = None,
  fresh_ok: bool = True,
  keep_checkpoints: int = 2,
  async_checkpoints: bool = True,
  distributed: bool | str = "auto",
  devices: Sequence[Any] | None = None,
) -> Run:
  """Builds the mesh and the sharded state: checkpoint ``step`` of ``workdir`` if saved, else fresh.

  ``step=None`` restores the newest usable checkpoint (falling back past corrupt ones); with none saved the state is fresh (seed,
  ``init_on``), or FileNotFoundError when not ``fresh_ok``.  A restored state is read straight onto
  its shardings.  With ``workdir=None`` nothing is read or written (benchmarks, baselines).
  ``batch_size`` (sequences per micro-batch), when given, is checked against the batch shards.
  """
  if workdir is None and step is not None:
    raise ValueError(f"step={step} names a checkpoint, which needs a workdir; got workdir=None")
  distributed_lib.initialize_distributed(distributed)
  mesh = sharding.make_mesh(mesh_config, devices)
  rules = mesh_config.rules
  sharding.check_model_sharding(model_config, mesh, rules)
  if batch_size is not None:
    sharding.check_batch(batch_size, mesh, rules)
  ckpt = None
  if workdir is not None:
    ckpt = checkpointing.Checkpointer(workdir, keep=keep_checkpoints, async_save=async_checkpoints)
  if ckpt is None or (step is None and ckpt.latest_step() is None):
    if not fresh_ok:
      raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints to restore; train first")
    graphdef, state, shardings = train_step.create_train_state(
      model_config, optimizer, mesh=mesh, rules=rules, seed=seed, init_on=init_on
    )
  else:
    graphdef, abstract, shardings = train_step.abstract_train_state(
      model_config, optimizer, mesh=mesh, rules=rules
    )
    step, state = ckpt.restore(abstract, step=step)  # step=None: the newest usable checkpoint
  return Run(mesh, rules, model_config, optimizer, graphdef, state, shardings, ckpt, step)
