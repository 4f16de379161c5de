"""Rotation angles position · θ_i from integer positions, with exact range reduction.

A position's magnitude is split into 12-bit digits ``|p| = Σ_j b_j 2^{12j}``: 3 digits for 32-bit
positions, 6 for 64-bit ones, so every value of every integer dtype is covered.  For each band the
host computes, exactly (integer arithmetic with 1/2π to 256 bits), the turns
``f_ij = frac(2^{12j} θ_i / 2π)`` of the float32 θ_i, and splits each into a head with 12
fractional bits and a float32 tail below 2^-12.  On the device ``frac(b_j · head)`` is exact in
float32 and so is its running sum modulo one turn; only the tails' products ``b_j · tail`` round.
The angle error is a few 1e-6 rad for every position (float32 ``position * θ`` drifts by
~0.02 rad near 10^6), measured against exact rational arithmetic in tests/test_positions.py.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import numpy.typing as npt
from jax.typing import ArrayLike

DIGIT_BITS = 12
_INVERSE_TWO_PI_BITS = 256


def _arctan_inverse(n: int, one: int) -> int:
  """Returns arctan(1/n) · one, rounded toward zero term by term (Taylor series, integers)."""
  total, power, k = 0, one // n, 0
  while power:
    term = power // (2 * k + 1)
    total += -term if k % 2 else term
    power //= n * n
    k += 1
  return total


@functools.lru_cache(maxsize=1)
def _inverse_two_pi() -> int:
  """Returns floor(2^256 / 2π) within ±1, from Machin's formula π = 16 atan(1/5) − 4 atan(1/239)."""
  guard = _INVERSE_TWO_PI_BITS + 64
  one = 1 << guard
  pi = 16 * _arctan_inverse(5, one) - 4 * _arctan_inverse(239, one)
  return (1 << (_INVERSE_TWO_PI_BITS + guard)) // (2 * pi)


def num_digits(dtype: npt.DTypeLike) -> int:
  """Returns how many 12-bit digits cover the magnitude of every value of an integer dtype."""
  return math.ceil(8 * int(np.dtype(dtype).itemsize) / DIGIT_BITS)


@functools.lru_cache(maxsize=128)
def _turn_constants(freq_bytes: bytes, digits: int) -> tuple[np.ndarray, np.ndarray]:
  """Returns float32 [digits, bands] heads and tails of frac(2^{12j} θ_i / 2π), computed exactly."""
  freqs = np.frombuffer(freq_bytes, np.float32)
  heads = np.zeros((digits, freqs.size), np.float32)
  tails = np.zeros((digits, freqs.size), np.float32)
  inverse_two_pi, unit = _inverse_two_pi(), 1 << DIGIT_BITS
  for i, theta in enumerate(freqs.astype(np.float64)):
    numerator, denominator = float(theta).as_integer_ratio()  # θ exactly; denominator = 2^k
    denominator <<= _INVERSE_TWO_PI_BITS
    for j in range(digits):
      turns = ((numerator * inverse_two_pi) << (DIGIT_BITS * j)) % denominator  # frac · denominator
      head = turns * unit // denominator
      heads[j, i] = head / unit
      tails[j, i] = (turns * unit - head * denominator) / (denominator * unit)
  return heads, tails


def turn_constants(freqs: np.ndarray, digits: int) -> tuple[np.ndarray, np.ndarray]:
  """Returns float32 [digits, bands] heads (12 fractional bits) and tails (< 2^-12) of the turns."""
  return _turn_constants(np.ascontiguousarray(freqs, np.float32).tobytes(), int(digits))


def check_positions(positions: ArrayLike) -> jax.Array:
  """Returns integer positions as a JAX array, or raises when they are not integers or would wrap.

  Host (NumPy or Python) values are checked against the dtype JAX would give them: with
  ``jax_enable_x64`` off, 64-bit values beyond the 32-bit range would otherwise wrap silently.
  """
  if not isinstance(positions, jax.Array):
    host = np.asarray(positions)
    if not np.issubdtype(host.dtype, np.integer):
      raise ValueError(f"positions must be integers, got dtype {host.dtype}")
    target = np.dtype(jax.dtypes.canonicalize_dtype(host.dtype))
    if host.size and target.itemsize < host.dtype.itemsize:
      low, high = int(host.min()), int(host.max())
      limits = np.iinfo(target)
      if low < limits.min or high > limits.max:
        raise ValueError(
          f"positions must fit in {target} while jax_enable_x64 is off, got values in "
          f"[{low}, {high}]; enable it (jax.config.update('jax_enable_x64', True)) for 64-bit "
          f"positions"
        )
    positions = jnp.asarray(host, target)
  checked: jax.Array = positions
  if not jnp.issubdtype(checked.dtype, jnp.integer):
    raise ValueError(f"positions must be integers, got dtype {checked.dtype}")
  return checked


def reduced_angles(positions: jax.Array, freqs: np.ndarray) -> jax.Array:
  """Returns float32 angles position · θ_i in [−π, π] for checked integer positions, float32 θ."""
  wide = positions.dtype.itemsize == 8
  digits = num_digits(positions.dtype if wide else np.int32)
  unsigned = jnp.uint64 if wide else jnp.uint32
  if jnp.issubdtype(positions.dtype, jnp.signedinteger):
    signed = positions.astype(jnp.int64 if wide else jnp.int32)
    magnitude = jnp.abs(signed).astype(unsigned)  # |INT_MIN| wraps to itself, = 2^(bits−1) unsigned
    negative = signed[..., None] < 0
  else:
    magnitude, negative = positions.astype(unsigned), None
  heads, tails = (jnp.asarray(c) for c in turn_constants(freqs, digits))
  exact = jnp.zeros(positions.shape + freqs.shape, jnp.float32)  # multiples of 2^-12 below 1
  inexact = jnp.zeros(positions.shape + freqs.shape, jnp.float32)
  for j in range(digits):
    digit = ((magnitude >> (DIGIT_BITS * j)) & (2**DIGIT_BITS - 1)).astype(jnp.float32)[..., None]
    product = digit * heads[j]  # < 2^12 with 12 fractional bits: exact, and so is what follows
    exact = exact + (product - jnp.floor(product))
    exact = exact - jnp.floor(exact)
    inexact = inexact + digit * tails[j]  # each term < 1
    inexact = inexact - jnp.floor(inexact)
  turns = exact + inexact
  if negative is not None:
    turns = jnp.where(negative, -turns, turns)
  turns = turns - jnp.round(turns)  # [-0.5, 0.5]: smaller angles, smaller rounding in sin/cos
  angles: jax.Array = turns * jnp.float32(2.0 * math.pi)
  return angles
