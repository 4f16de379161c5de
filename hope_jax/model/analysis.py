"""The analysis forward: the model's logits with per-layer attention probabilities and q, k.

Separate from the training forward (:meth:`Transformer.__call__`), which it mirrors block for
block with the same parameters; attention runs by :meth:`Attention.analyze`, the explicit XLA
reference path (memory quadratic in length: small inputs only).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from hope_jax.model.transformer import Transformer, broadcast_positions


def analysis_forward(
  net: Transformer,
  tokens: jax.Array,
  positions: jax.Array | None = None,
  segment_ids: jax.Array | None = None,
  *,
  reduce_layer: Callable[[dict[str, jax.Array]], dict[str, jax.Array]] | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Returns (logits [B, T, vocab], per-layer extras) of tokens [B, T].

  extras["attention"]: attention probabilities [layers, B, heads, T, T] float32; extras["q"],
  extras["k"]: *pre-rotation* queries and keys [layers, B, T, heads, head_dim] float32, k
  repeated over each GQA group (query head h reads kv head h // (num_heads // num_kv_heads)).
  positions and segment_ids as for the model's forward.  ``reduce_layer`` maps each layer's
  extras to what is kept of them, before the next layer runs: with it, one layer's [B, heads, T, T]
  probabilities are alive at a time instead of every layer's.
  """
  tokens = jnp.asarray(tokens)
  positions = broadcast_positions(positions, tokens.shape)
  x, update, per_layer = net.embed(tokens), None, []
  for block in net.blocks:
    x, normed = block.attn_norm.add_and_norm(x, update)
    h, extras = block.attn.analyze(normed, positions, segment_ids)
    x, normed = block.mlp_norm.add_and_norm(x, h)
    update = block.mlp(normed)
    per_layer.append(extras if reduce_layer is None else reduce_layer(extras))
  stacked = {name: jnp.stack([e[name] for e in per_layer]) for name in per_layer[0]}
  return net.logits(x, update), stacked
