"""Key/value cache for incremental decoding, and greedy generation on top of it.

The cache holds *rotated* keys (rotation depends only on a key's own position) and values in the
compute dtype, the position of every slot (for ALiBi/KERPLE biases), and how many slots are
filled.  All rows advance together.  :func:`extend` runs T new tokens against the cache with one
[T, S] mask (slot ≤ the query's slot), so prefill-then-decode reproduces the full forward pass.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from flax import nnx

if TYPE_CHECKING:  # pragma: no cover
  from hope_jax.model import Transformer, TransformerConfig


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
  return KVCache(keys=zeros, values=zeros, positions=jnp.zeros((batch_size, max_length), jnp.int32),
                 length=jnp.zeros((), jnp.int32))


def _check_room(cache: KVCache, new_tokens: int) -> None:
  """Raises ValueError when a concrete cache length leaves no room for new_tokens."""
  try:
    length = int(cache.length)
  except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
    return  # traced: the caller sized the cache (see generate)
  if length + new_tokens > cache.max_length:
    raise ValueError(f"the cache holds {length} of max_length={cache.max_length} tokens; "
                     f"{new_tokens} more do not fit")


def extend(model: Transformer, tokens: jax.Array, cache: KVCache,
           positions: jax.Array | None = None) -> tuple[jax.Array, KVCache]:
  """Runs tokens [B, T] after the cached ones; returns (logits [B, T, V], new cache).

  positions default to the slot indices (length, …, length + T − 1).  There are no segment_ids:
  each row is one document.
  """
  tokens = jnp.asarray(tokens)
  batch, num_new = tokens.shape
  _check_room(cache, num_new)
  slots = cache.length + jnp.arange(num_new, dtype=jnp.int32)
  if positions is None:
    positions = jnp.broadcast_to(slots, (batch, num_new))
  positions = jnp.asarray(positions, jnp.int32)
  zero = jnp.zeros((), jnp.int32)
  key_positions = jax.lax.dynamic_update_slice(cache.positions, positions, (zero, cache.length))
  mask = jnp.arange(cache.max_length, dtype=jnp.int32)[None, :] <= slots[:, None]  # [T, S]
  x = model.embed(tokens)
  keys, values = cache.keys, cache.values
  for i, block in enumerate(model.blocks):
    x, k, v = block.extend(x, positions, keys=keys[i], values=values[i],
                           key_positions=key_positions, start=cache.length, mask=mask)
    keys, values = keys.at[i].set(k), values.at[i].set(v)  # in place under jit
  new_cache = KVCache(keys=keys, values=values, positions=key_positions,
                      length=cache.length + num_new)
  return model.logits(x), new_cache


def generate(model: Transformer, prompt: jax.Array, max_new_tokens: int) -> jax.Array:
  """Greedy decoding: returns [B, P + max_new_tokens] int32, the prompt followed by new tokens."""
  prompt = jnp.asarray(prompt, jnp.int32)
  if isinstance(max_new_tokens, bool) or int(max_new_tokens) != max_new_tokens or (
      max_new_tokens < 0):
    raise ValueError(f"max_new_tokens must be a non-negative integer, got "
                     f"max_new_tokens={max_new_tokens!r}")
  if max_new_tokens == 0:
    return prompt
  batch, prompt_length = prompt.shape
  graphdef, state = nnx.split(model)

  @jax.jit
  def run(state, prompt):
    m = nnx.merge(graphdef, state)
    cache = m.init_cache(batch, prompt_length + max_new_tokens)
    logits, cache = m.prefill(prompt, cache)
    first = jnp.argmax(logits[:, -1], axis=-1).astype(jnp.int32)

    def step(carry, _):
      token, cache = carry
      logits, cache = m.decode_step(token, cache)
      return (jnp.argmax(logits, axis=-1).astype(jnp.int32), cache), token

    (last, _), emitted = jax.lax.scan(step, (first, cache), None, length=max_new_tokens - 1)
    new = jnp.concatenate([emitted.T, last[:, None]], axis=1)
    return jnp.concatenate([prompt, new], axis=1)

  return run(state, prompt)
