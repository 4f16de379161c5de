"""Key/value cache for incremental decoding.

The cache holds *rotated* keys (rotation depends only on a key's own position) and values in the
compute dtype, the position of every slot (for ALiBi/KERPLE biases), and how many slots are
filled.  All rows advance together.  ``Transformer.extend`` runs T new tokens against the cache with one
[T, S] mask (slot ≤ the query's slot), so prefill-then-decode reproduces the full forward pass.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from hope_jax.model.config import TransformerConfig


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
  """Per-layer rotated keys and values [layers, B, S, kv_heads, head_dim], slot positions, fill."""

  keys: jax.Array
  values: jax.Array
  positions: jax.Array  # [B, S] int32
  length: jax.Array  # int32 scalar: number of filled slots

  @property
  def max_length(self) -> int:
    """The number of slots S."""
    return self.keys.shape[2]


def init_cache(config: TransformerConfig, batch_size: int, max_length: int) -> KVCache:
  """Returns an empty cache for batch_size rows and max_length slots."""
  for name, value in (("batch_size", batch_size), ("max_length", max_length)):
    if isinstance(value, bool) or int(value) != value or value <= 0:
      raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")
  shape = (config.num_layers, batch_size, max_length, config.num_kv_heads, config.head_dim)
  zeros = jnp.zeros(shape, config.compute_jnp_dtype)
  return KVCache(
    keys=zeros,
    values=zeros,
    positions=jnp.zeros((batch_size, max_length), jnp.int32),
    length=jnp.zeros((), jnp.int32),
  )


def check_room(cache: KVCache, new_tokens: int) -> None:
  """Raises ValueError when a concrete cache length leaves no room for new_tokens."""
  try:
    length = int(cache.length)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
    return  # traced: the caller sized the cache (see generate)
  if length + new_tokens > cache.max_length:
    raise ValueError(
      f"the cache holds {length} of max_length={cache.max_length} tokens; "
      f"{new_tokens} more do not fit"
    )
