"""The optimizer: AdamW with linear warmup and cosine decay, global-norm clipping, masked decay."""

from __future__ import annotations

import jax
import optax

from hope_jax.training.config import OptimizerConfig


def learning_rate_schedule(config: OptimizerConfig) -> optax.Schedule:
  """Linear warmup to learning_rate, then cosine decay to learning_rate · min_lr_ratio.

  Warmup is capped at steps, so shortening a run with --config.train.steps just works.
  """
  warmup = min(config.warmup_steps, config.steps)
  return optax.warmup_cosine_decay_schedule(
    init_value=0.0,
    peak_value=config.learning_rate,
    warmup_steps=warmup,
    decay_steps=max(config.steps, warmup + 1),
    end_value=config.learning_rate * config.min_lr_ratio,
  )


def decay_mask(params) -> object:
  """True for matrices (weights, embeddings); False for norms, biases and other vectors or scalars."""
  return jax.tree.map(lambda p: getattr(p, "ndim", 0) >= 2, params)


def make_optimizer(config: OptimizerConfig) -> optax.GradientTransformation:
  """Returns clip-by-global-norm followed by AdamW with the config's schedule and decay mask."""
  return optax.chain(
    optax.clip_by_global_norm(config.clip_norm) if config.clip_norm > 0 else optax.identity(),
    optax.adamw(
      learning_rate_schedule(config),
      b1=config.b1,
      b2=config.b2,
      eps=config.eps,
      weight_decay=config.weight_decay,
      mask=decay_mask,
    ),
  )
