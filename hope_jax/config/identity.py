"""A run's identity: the saved config decides what was trained; commands may not contradict it.

The fields of :data:`IDENTITY_FIELDS` define the trained model (architecture, encoder and its
parameters, training length, tokenizer, vocabulary).  Once a run has a checkpoint, resuming or
evaluating it with a config that changes any of them is refused, naming the field and both values;
everything else (evaluation lengths, scaling, log-n, probes, training schedule) stays free.
"""

from __future__ import annotations

import json
import os
from typing import Any

from etils import epath

from hope_jax.config.resolve import RunConfig, resolve

CONFIG_FILE = "config.json"
IDENTITY_FIELDS: tuple[str, ...] = (
  "model.encoder",
  "model.encoder_params",
  "model.train_length",
  "model.vocab_size",
  "model.num_layers",
  "model.embed_dim",
  "model.num_heads",
  "model.num_kv_heads",
  "model.head_dim",
  "model.mlp_dim",
  "model.tie_embeddings",
  "data.tokenizer",
)


class RunMismatch(ValueError):
  """Raised when a command's config contradicts the saved config of the run it addresses."""


def identity(run: RunConfig) -> dict[str, Any]:
  """The resolved values of IDENTITY_FIELDS; encoder parameters one entry each."""
  values: dict[str, Any] = {}
  for field in IDENTITY_FIELDS:
    section, name = field.split(".")
    value = getattr(getattr(run, section), name)
    if name == "encoder_params":
      values.update({f"{field}.{k}": v for k, v in dict(value).items()})
    else:
      values[field] = value
  return values


def has_checkpoints(workdir: str) -> bool:
  """Whether workdir holds at least one finished checkpoint (nothing is created)."""
  directory = epath.Path(workdir) / "checkpoints"
  return directory.exists() and any(p.name.isdigit() for p in directory.iterdir())


def saved_run(workdir: str) -> RunConfig | None:
  """The run config saved in workdir/config.json, resolved (flat legacy eval keys too), or None."""
  path = epath.Path(workdir) / CONFIG_FILE
  if not path.exists():
    return None
  try:
    return resolve(json.loads(path.read_text()))
  except ValueError as error:
    raise ValueError(f"{os.fspath(path)} does not resolve: {error}") from error


def check_matches(saved: RunConfig, given: RunConfig, workdir: str) -> None:
  """Raises RunMismatch naming the first identity field where ``given`` contradicts ``saved``."""
  before, now = identity(saved), identity(given)
  for field in dict.fromkeys([*before, *now]):
    if before.get(field) != now.get(field):
      raise RunMismatch(
        f"{field}: the run in {workdir} was trained with {before.get(field)!r}, this command "
        f"gives {now.get(field)!r}; {field} defines the trained model (saved in "
        f"{CONFIG_FILE}) and cannot change (evaluation options such as eval.scaling can)"
      )
