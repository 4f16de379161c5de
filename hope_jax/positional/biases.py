"""Additive attention-logit biases: ALiBi and KERPLE-log, as pure JAX functions."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike


def alibi_slopes(num_heads: int) -> np.ndarray:
  """Returns ALiBi's geometric head slopes (Press et al. 2022), non-power-of-two counts included.

  For n a power of two the slopes are 2^(−8/n), 2^(−16/n), …; otherwise the n' = 2^⌊log2 n⌋ slopes
  followed by every other slope of the 2n' set, as in the reference implementation.
  """
  if isinstance(num_heads, bool) or int(num_heads) != num_heads or num_heads <= 0:
    raise ValueError(f"num_heads must be a positive integer, got num_heads={num_heads!r}")

  def power_of_two(n: int) -> list[float]:
    start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
    return [start * start**i for i in range(n)]

  n = int(num_heads)
  if math.log2(n).is_integer():
    slopes = power_of_two(n)
  else:
    closest = 2 ** math.floor(math.log2(n))
    slopes = power_of_two(closest) + power_of_two(2 * closest)[0::2][: n - closest]
  return np.asarray(slopes, np.float32)


def relative_distance(q_positions: ArrayLike, k_positions: ArrayLike) -> jax.Array:
  """Returns float32 |q − k| of shape [..., q, k] from integer positions [..., q] and [..., k]."""
  q = jnp.asarray(q_positions)
  k = jnp.asarray(k_positions)
  for name, p in (("q_positions", q), ("k_positions", k)):
    if not jnp.issubdtype(p.dtype, jnp.integer):
      raise ValueError(f"{name} must be integers, got dtype {p.dtype}")
  diff = q.astype(jnp.int32)[..., :, None] - k.astype(jnp.int32)[..., None, :]
  return jnp.abs(diff).astype(jnp.float32)


def alibi_bias(q_positions: ArrayLike, k_positions: ArrayLike, slopes: ArrayLike) -> jax.Array:
  """Returns ALiBi's bias −slope_h·|q − k|, shape [..., heads, q, k] (float32)."""
  distance = relative_distance(q_positions, k_positions)[..., None, :, :]
  return -jnp.asarray(slopes, jnp.float32)[:, None, None] * distance


def kerple_log_bias(
  q_positions: ArrayLike, k_positions: ArrayLike, *, p: ArrayLike, a: ArrayLike
) -> jax.Array:
  """Returns KERPLE-log's bias −p_h·log(1 + a_h·|q − k|) (Chi et al. 2022), shape [..., heads, q, k].

  p and a are per-head positive parameters ([heads]); callers keep them positive (e.g. by clamping).
  """
  distance = relative_distance(q_positions, k_positions)[..., None, :, :]
  p_h = jnp.asarray(p, jnp.float32)[:, None, None]
  a_h = jnp.asarray(a, jnp.float32)[:, None, None]
  bias: jax.Array = -p_h * jnp.log1p(a_h * distance)
  return bias
