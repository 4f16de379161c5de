"""The optimizer: AdamW with linear warmup and cosine decay, global-norm clipping, masked decay."""

from __future__ import annotations

import jax
import ml_collections
import optax


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warmup to train.learning_rate, then cosine decay to learning_rate · min_lr_ratio.

  Warmup is capped at train.steps, so shortening a run with --config.train.steps just works.
  """
  t = config.train
  warmup = min(t.warmup_steps, t.steps)
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=t.learning_rate, warmup_steps=warmup,
      decay_steps=max(t.steps, warmup + 1), end_value=t.learning_rate * t.min_lr_ratio)


def decay_mask(params) -> object:
  """True for matrices (weights, embeddings); False for norms, biases and other vectors or scalars."""
  return jax.tree.map(lambda p: getattr(p, "ndim", 0) >= 2, params)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Returns clip-by-global-norm followed by AdamW with the config's schedule and decay mask."""
  t = config.train
  return optax.chain(
      optax.clip_by_global_norm(t.clip_norm) if t.clip_norm > 0 else optax.identity(),
      optax.adamw(learning_rate_schedule(config), b1=t.b1, b2=t.b2, eps=t.eps,
                  weight_decay=t.weight_decay, mask=decay_mask),
  )
