"""Causal attention in blocks with an online softmax (flash-style), in plain XLA: no [T, T] buffer.

``causal_attention(q, k, v, scale=..., block=...)`` visits the queries one block at a time (a
sequential ``lax.map``) and, for each, the key blocks at or before it (a ``fori_loop`` whose trip
count grows with the block, so the causal half is never computed), keeping the running row
maximum, denominator and weighted sum of values in float32.  The largest buffer is one block of
logits [B, heads, block, block].  ``bias_fn(q_positions, k_positions)`` adds a logit bias block by
block (ALiBi, KERPLE).  Numerics follow ``jax.nn.dot_product_attention(implementation="xla")``:
float32 logits scaled after the product, probabilities rounded to the values' dtype for the second
product.  This is the long-context evaluation's attention on CPU and for bias encoders; on GPU
rotary encoders use cuDNN's flash attention instead (:mod:`hope_jax.evaluation.long_forward`).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

# (query positions [B, bq], key positions [B, bk]) -> float32 logit bias [B, heads, bq, bk].
BiasFn = Callable[[jax.Array, jax.Array], jax.Array]
_MASKED = float(jnp.finfo(jnp.float32).min)


def causal_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  scale: float,
  block: int,
  positions: jax.Array | None = None,
  bias_fn: BiasFn | None = None,
) -> jax.Array:
  """Causal grouped-query attention of q [B,T,N,D] over k, v [B,T,K,D]; returns [B,T,N,D].

  T must be a multiple of block; ``positions`` [B, T] (default arange) feed ``bias_fn`` only (the
  causal mask follows token order).
  """
  batch, length, heads, head_dim = q.shape
  kv_heads = k.shape[2]
  if length % block:
    raise ValueError(
      f"causal_attention needs a length that is a multiple of block={block}, got length={length}"
    )
  if heads % kv_heads:
    raise ValueError(f"query heads ({heads}) must be a multiple of kv heads ({kv_heads})")
  group, blocks = heads // kv_heads, length // block
  if positions is None:
    positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), (batch, length))
  q_blocks = q.reshape(batch, blocks, block, kv_heads, group, head_dim)
  k_blocks = k.reshape(batch, blocks, block, kv_heads, head_dim)
  v_blocks = v.reshape(batch, blocks, block, kv_heads, head_dim)
  p_blocks = positions.reshape(batch, blocks, block)
  offsets = jnp.arange(block, dtype=jnp.int32)

  def take(blocks_array: jax.Array, index: jax.Array) -> jax.Array:
    return jax.lax.dynamic_index_in_dim(blocks_array, index, axis=1, keepdims=False)

  def query_block(i: jax.Array) -> jax.Array:
    q_i, p_i = take(q_blocks, i), take(p_blocks, i)  # [B, bq, K, G, D], [B, bq]

    def key_block(j, carry):
      row_max, denominator, total = carry
      k_j, v_j = take(k_blocks, j), take(v_blocks, j)
      logits = jnp.einsum("bqkgd,bskd->bkgqs", q_i, k_j, preferred_element_type=jnp.float32)
      logits = logits * jnp.float32(scale)
      if bias_fn is not None:
        bias = bias_fn(p_i, take(p_blocks, j)).astype(jnp.float32)
        logits = logits + bias.reshape(batch, kv_heads, group, block, block)
      allowed = (i * block + offsets)[:, None] >= (j * block + offsets)[None, :]
      logits = jnp.where(allowed, logits, _MASKED)
      new_max = jnp.maximum(row_max, logits.max(axis=-1))
      weights = jnp.exp(logits - new_max[..., None])
      correction = jnp.exp(row_max - new_max)
      denominator = denominator * correction + weights.sum(axis=-1)
      total = total * correction[..., None] + jnp.einsum(
        "bkgqs,bskd->bkgqd", weights.astype(v.dtype), v_j, preferred_element_type=jnp.float32
      )
      return new_max, denominator, total

    stats = (batch, kv_heads, group, block)
    init = (
      jnp.full(stats, _MASKED, jnp.float32),
      jnp.zeros(stats, jnp.float32),
      jnp.zeros((*stats, head_dim), jnp.float32),
    )
    _, denominator, total = jax.lax.fori_loop(0, i + 1, key_block, init)
    out = (total / denominator[..., None]).astype(q.dtype)  # [B, K, G, bq, D]
    return out.transpose(0, 3, 1, 2, 4).reshape(batch, block, heads, head_dim)

  out = jax.lax.map(query_block, jnp.arange(blocks, dtype=jnp.int32))  # [blocks, B, bq, N, D]
  return out.swapaxes(0, 1).reshape(batch, length, heads, head_dim)
