"""Typed training settings: the optimizer's and the loop's, frozen and validated on construction."""

from __future__ import annotations

import dataclasses
from typing import Any

from hope_jax import _mappings as mappings
from hope_jax.training import step as train_step


def _check_int(section: str, name: str, value: Any, *, allow_zero: bool = False) -> None:
  """Raises ValueError naming config.<section>.<name> unless value is a positive (or 0) integer."""
  ok = (
    isinstance(value, int)
    and not isinstance(value, bool)
    and (value >= 0 if allow_zero else value > 0)
  )
  if not ok:
    kind = "non-negative" if allow_zero else "positive"
    raise ValueError(
      f"config.{section}.{name} must be a {kind} integer, got {section}.{name}={value!r}"
    )


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """AdamW with linear warmup and cosine decay over ``steps``, and global-norm clipping."""

  steps: int = 200
  learning_rate: float = 3e-3
  warmup_steps: int = 20
  min_lr_ratio: float = 0.1  # cosine decays to learning_rate * min_lr_ratio
  weight_decay: float = 0.1  # not applied to norms, biases and other vectors
  b1: float = 0.9
  b2: float = 0.95
  eps: float = 1e-8
  clip_norm: float = 1.0  # 0 = no clipping

  def __post_init__(self):
    """Validates the schedule and decay, naming the field."""
    _check_int("train", "steps", self.steps)
    _check_int("train", "warmup_steps", self.warmup_steps, allow_zero=True)
    if not self.learning_rate > 0:
      raise ValueError(
        f"config.train.learning_rate must be > 0, got train.learning_rate={self.learning_rate!r}"
      )
    if not 0 <= self.min_lr_ratio <= 1:
      raise ValueError(
        f"config.train.min_lr_ratio must lie in [0, 1], got "
        f"train.min_lr_ratio={self.min_lr_ratio!r}"
      )
    if self.weight_decay < 0:
      raise ValueError(
        f"config.train.weight_decay must be >= 0, got train.weight_decay={self.weight_decay!r}"
      )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """How the loop runs: steps, batch, logging, checkpoints and where the initial state is built."""

  steps: int = 200
  batch_size: int = 16  # global batch, in sequences
  grad_accum_steps: int = 1
  log_every: int = 10
  checkpoint_every: int = 100
  keep_checkpoints: int = 2
  async_checkpoints: bool = True
  tensorboard: bool = True
  peak_flops_per_device: float = 0.0  # 0 = look the device up in metrics.PEAK_FLOPS
  init_on: str = "host"  # "host" | "device": see train_step.create_train_state
  stop_after: int = 0  # stop (with a checkpoint) after this step, as a preemption would; 0 = never

  def __post_init__(self):
    """Validates counts, the batch split and init_on, naming the field."""
    for name in (
      "steps",
      "batch_size",
      "grad_accum_steps",
      "log_every",
      "checkpoint_every",
      "keep_checkpoints",
    ):
      _check_int("train", name, getattr(self, name))
    _check_int("train", "stop_after", self.stop_after, allow_zero=True)
    if self.batch_size % self.grad_accum_steps:
      raise ValueError(
        f"config.train.batch_size={self.batch_size} is not divisible by "
        f"config.train.grad_accum_steps={self.grad_accum_steps}"
      )
    if self.init_on not in train_step.INIT_PLACES:
      raise ValueError(
        f"config.train.init_on must be one of {train_step.INIT_PLACES}, got "
        f"train.init_on={self.init_on!r}"
      )

  @property
  def micro_batch_size(self) -> int:
    """Sequences per gradient-accumulation step."""
    return self.batch_size // self.grad_accum_steps

  @classmethod
  def from_mapping(cls, mapping: Any) -> TrainConfig:
    """Builds a TrainConfig from a dict or ConfigDict; unknown keys raise ValueError naming them."""
    return mappings.dataclass_from_mapping(cls, mapping)
