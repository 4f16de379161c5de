"""Greedy generation with the key/value cache."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hope_jax.model.transformer import Transformer


def generate(model: Transformer, prompt: jax.Array, max_new_tokens: int) -> jax.Array:
  """Greedy decoding: returns [B, P + max_new_tokens] int32, the prompt followed by new tokens."""
  prompt = jnp.asarray(prompt, jnp.int32)
  if (
    isinstance(max_new_tokens, bool)
    or int(max_new_tokens) != max_new_tokens
    or (max_new_tokens < 0)
  ):
    raise ValueError(
      f"max_new_tokens must be a non-negative integer, got max_new_tokens={max_new_tokens!r}"
    )
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
