"""The config boundary: a user's ConfigDict resolved once into frozen, typed, validated configs.

Layers below never see the ConfigDict: the model gets a TransformerConfig, the mesh a MeshConfig,
the data a DataConfig, the loop a TrainConfig and an OptimizerConfig, the evaluations an
EvalConfig.  Defaults that depend on other fields (``model.train_length``, ``model.head_dim``) are
filled here, once; config.json files of runs saved with the flat ``eval.copy_*``-style keys resolve
too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from hope_jax import model
from hope_jax.data.config import DataConfig
from hope_jax.evaluation.config import EvalConfig
from hope_jax.parallel import sharding
from hope_jax.positional import registry
from hope_jax.training import optim
from hope_jax.training import setup as training_setup
from hope_jax.training.config import OptimizerConfig, TrainConfig

DISTRIBUTED: dict[str, bool | str] = {"auto": "auto", "on": True, "off": False}
# Flat evaluation keys of configs saved before the per-evaluation groups: old key -> (group, key).
LEGACY_EVAL_KEYS: dict[str, tuple[str, str]] = {
  "lengths": ("perplexity", "lengths"),
  "max_windows": ("perplexity", "max_windows"),
  "position_buckets": ("perplexity", "position_buckets"),
  **{f"copy_{k}": ("copy", k) for k in ("segment_length", "gaps", "sources", "examples")},
  **{f"passkey_{k}": ("passkey", k) for k in ("lengths", "depths", "keys")},
  **{
    f"recall_{k}": ("recall", k) for k in ("pairs", "distances", "queries", "examples", "sources")
  },
  **{
    f"attention_{k}": ("attention", k) for k in ("length", "windows", "buckets", "position_offset")
  },
}
_OPTIMIZER_FIELDS = frozenset(f.name for f in dataclasses.fields(OptimizerConfig))
_TRAIN_FIELDS = frozenset(f.name for f in dataclasses.fields(TrainConfig))


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """A whole run's configuration, typed and validated."""

  seed: int
  distributed: bool | str  # True, False or "auto"
  model: model.TransformerConfig
  mesh: sharding.MeshConfig
  data: DataConfig
  train: TrainConfig
  optimizer: OptimizerConfig
  eval: EvalConfig

  def setup(
    self,
    workdir: str | None = None,
    *,
    step: int | None = None,
    fresh_ok: bool = True,
    devices: Any = None,
  ) -> training_setup.Run:
    """Builds the run's mesh and sharded state through :func:`hope_jax.training.setup.setup`."""
    return training_setup.setup(
      self.model,
      self.mesh,
      optimizer=optim.make_optimizer(self.optimizer),
      seed=self.seed,
      init_on=self.train.init_on,
      batch_size=self.train.micro_batch_size,
      workdir=workdir,
      step=step,
      fresh_ok=fresh_ok,
      keep_checkpoints=self.train.keep_checkpoints,
      async_checkpoints=self.train.async_checkpoints,
      distributed=self.distributed,
      devices=devices,
    )


def as_dict(config: Any) -> dict[str, Any]:
  """Returns a ConfigDict (or nested mapping) as plain nested dicts, flat eval keys grouped."""
  plain = config.to_dict() if hasattr(config, "to_dict") else config
  plain = {k: dict(v) if isinstance(v, Mapping) else v for k, v in dict(plain).items()}
  evaluation = dict(plain.get("eval", {}))
  for old, (group, key) in LEGACY_EVAL_KEYS.items():
    if old in evaluation:
      evaluation.setdefault(group, {})
      evaluation[group] = {**evaluation[group], key: evaluation.pop(old)}
  plain["eval"] = evaluation
  return plain


def encoder_kwargs(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
  """The parameters encoder ``name`` takes; a set parameter it does not take is an error."""
  accepted = registry.encoder_parameters(name)
  defaults = registry.all_encoder_parameters()
  kwargs = {}
  for key, value in dict(params).items():
    if key in accepted:
      kwargs[key] = value
    elif key not in defaults:
      raise ValueError(
        f"config.model.encoder_params.{key} is not a parameter of any encoder "
        f"(value {value!r}); parameters: {sorted(defaults)}"
      )
    elif value != defaults[key]:
      raise ValueError(
        f"config.model.encoder_params.{key}={value!r} is set, but encoder "
        f"{name!r} takes only {sorted(accepted)}"
      )
  return kwargs


def _section(plain: dict[str, Any], name: str) -> dict[str, Any]:
  if name not in plain:
    raise ValueError(f"config has no section {name!r}")
  return dict(plain[name])


def _nonnegative_int(field: str, value: Any) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise ValueError(f"config.{field} must be a non-negative integer, got {field}={value!r}")
  return value


def resolve_model(model_fields: Mapping[str, Any], data: DataConfig) -> model.TransformerConfig:
  """The TransformerConfig of config.model: train_length 0 = data.seq_len, head_dim 0 = default."""
  fields = dict(model_fields)
  encoder = fields.get("encoder", "rope")
  fields["encoder_params"] = encoder_kwargs(encoder, fields.get("encoder_params", {}))
  fields["train_length"] = (
    _nonnegative_int("model.train_length", fields.get("train_length", 0)) or data.seq_len
  )
  fields["head_dim"] = _nonnegative_int("model.head_dim", fields.get("head_dim", 0)) or None
  try:
    return model.TransformerConfig.from_mapping(fields)
  except ValueError as error:
    raise ValueError(f"config.model: {error}") from error


def resolve(config: Any) -> RunConfig:
  """Resolves and validates a ConfigDict (or its dict, e.g. a saved config.json) into a RunConfig.

  A bad value raises ValueError naming the field and the value.
  """
  plain = as_dict(config)
  distributed = plain.get("distributed", "auto")
  if distributed not in DISTRIBUTED:
    raise ValueError(
      f"config.distributed must be one of {sorted(DISTRIBUTED)}, got distributed={distributed!r}"
    )
  seed = plain.get("seed", 0)
  if isinstance(seed, bool) or not isinstance(seed, int):
    raise ValueError(f"config.seed must be an integer, got seed={seed!r}")
  data = DataConfig.from_mapping(_section(plain, "data"))
  train_fields = _section(plain, "train")
  unknown = sorted(set(train_fields) - _OPTIMIZER_FIELDS - _TRAIN_FIELDS)
  if unknown:
    raise ValueError(f"unknown config.train field(s) {unknown}")
  train = TrainConfig(**{k: v for k, v in train_fields.items() if k in _TRAIN_FIELDS})
  optimizer = OptimizerConfig(**{k: v for k, v in train_fields.items() if k in _OPTIMIZER_FIELDS})
  try:
    mesh = sharding.MeshConfig.from_mapping(_section(plain, "mesh"))
  except ValueError as error:
    raise ValueError(f"config.mesh: {error}") from error
  return RunConfig(
    seed=seed,
    distributed=DISTRIBUTED[distributed],
    model=resolve_model(_section(plain, "model"), data),
    mesh=mesh,
    data=data,
    train=train,
    optimizer=optimizer,
    eval=EvalConfig.from_mapping(_section(plain, "eval")),
  )
