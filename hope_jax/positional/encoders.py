"""Rotary-family positional encoders (RoPE, HoPE and baselines) as pure JAX functions.

A rotary encoder is described by a frequency array ``θ`` of shape ``[head_dim // 2]``: pair ``i``
of a query or key is rotated by the angle ``position · θ_i``.  A band whose frequency is exactly 0
is left unrotated (position-independent, like a NoPE channel); HoPE, NoPE, p-RoPE and partial
rotary are all expressed this way, and the context-extension transforms in
:mod:`hope_jax.positional.scaling` map one frequency array to another, so they apply to RoPE and HoPE alike.

Numerics: angles are computed from integer positions with exact range reduction.  A position is
split into 12-bit digits ``p = Σ_j b_j 2^{12j}``; for each band the host precomputes, in float64,
the turns ``f_ij = frac(2^{12j} θ_i / 2π)`` and splits each into a 12-bit head (so ``b_j · head`` is
exact in float32) and a float32 tail below 2^-12.  The device accumulates ``frac(b_j · head) +
b_j · tail`` in float32, reducing modulo one turn after every digit, so the angle error stays
near 1e-6 rad for every int32 position, where a float32 ``position * θ`` drifts by ~0.02 rad near
10^6 and breaks the relative-position property.  No sin/cos table is indexed by position.  Frequencies are static configuration constants: the
rotation needs them as concrete arrays (NumPy or concrete JAX arrays), not tracers.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

Layout = Literal["split_half", "interleaved"]
LAYOUTS: tuple[str, ...] = ("split_half", "interleaved")

_DIGIT_BITS = 12
_NUM_DIGITS = 3  # covers |position| < 2**36, all int32 positions


# ----------------------------------------------------------------------------------------------
# Validation helpers.


def _check_head_dim(head_dim: int) -> int:
  """Returns head_dim as int, or raises ValueError naming the field when it is not even and > 0."""
  if isinstance(head_dim, bool) or int(head_dim) != head_dim or head_dim <= 0 or head_dim % 2:
    raise ValueError(f"head_dim must be a positive even integer, got head_dim={head_dim!r}")
  return int(head_dim)


def _check_base(base: float) -> float:
  """Returns base as float, or raises ValueError naming the field when it is not > 1."""
  if not np.isfinite(base) or base <= 1.0:
    raise ValueError(f"base must be a finite number > 1, got base={base!r}")
  return float(base)


def _check_fraction(name: str, value: float) -> float:
  """Returns value as float, or raises ValueError naming the field when outside [0, 1]."""
  if not (0.0 <= float(value) <= 1.0):
    raise ValueError(f"{name} must lie in [0, 1], got {name}={value!r}")
  return float(value)


def _check_train_length(train_length: int) -> int:
  """Returns train_length as int, or raises ValueError naming the field when it is not > 0."""
  if isinstance(train_length, bool) or int(train_length) != train_length or train_length <= 0:
    raise ValueError(f"train_length must be a positive integer, got train_length={train_length!r}")
  return int(train_length)


def concrete_frequencies(frequencies) -> np.ndarray:
  """Returns the frequency array as float32 NumPy, or raises if it is a tracer or malformed."""
  try:
    freqs = np.asarray(frequencies)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError) as e:
    raise ValueError(
        "frequencies must be a concrete array (a static configuration constant), got a traced "
        "value; compute them outside jit, e.g. with rope_frequencies(...)") from e
  if freqs.ndim != 1:
    raise ValueError(f"frequencies must be 1-D [head_dim // 2], got shape {freqs.shape}")
  freqs = freqs.astype(np.float32)
  if not np.all(np.isfinite(freqs)) or np.any(freqs < 0):
    raise ValueError(f"frequencies must be finite and >= 0, got {freqs!r}")
  return freqs


# ----------------------------------------------------------------------------------------------
# Frequency arrays.


def rope_frequencies(head_dim: int, *, base: float = 10000.0) -> np.ndarray:
  """Returns RoPE's float32 frequencies θ_i = base^(−2i/head_dim), shape [head_dim // 2]."""
  head_dim, base = _check_head_dim(head_dim), _check_base(base)
  exponents = np.arange(0, head_dim, 2, dtype=np.float64) / head_dim
  return (base ** -exponents).astype(np.float32)


def hope_kept_bands(head_dim: int, *, train_length: int, base: float = 10000.0,
                    min_periods: float = 1.0) -> int:
  """Returns how many of the fastest bands complete ≥ min_periods full turns within train_length.

  The rule (reconstructed from the paper's abstract): band i is kept when θ_i ≥ 2π·min_periods/L,
  i.e. its wavelength 2π/θ_i is at most L/min_periods.  Compared in float64 on the float32 θ.
  If no band passes, the fastest band is kept (returns 1), so HoPE never degenerates into NoPE.
  """
  train_length = _check_train_length(train_length)
  if not (min_periods > 0 and np.isfinite(min_periods)):
    raise ValueError(f"min_periods must be a finite number > 0, got min_periods={min_periods!r}")
  theta = rope_frequencies(head_dim, base=base).astype(np.float64)
  kept = int(np.count_nonzero(theta >= 2.0 * math.pi * min_periods / train_length))
  return max(kept, 1)


def hope_frequencies(head_dim: int, *, train_length: int, base: float = 10000.0,
                     num_kept_bands: int | None = None, min_periods: float = 1.0) -> np.ndarray:
  """Returns HoPE's frequencies: RoPE's, with every band slower than the cutoff set to 0.

  By default a band is kept when it completes at least ``min_periods`` (default 1) full periods
  within the *training* length ``train_length`` (θ_i ≥ 2π·min_periods/L); if no band passes, the
  fastest band alone is kept.  Because the paper's exact rule is reconstructed, the cutoff can be
  chosen directly instead: ``num_kept_bands`` keeps exactly that many of the fastest bands
  (0 gives NoPE, head_dim // 2 gives RoPE) and then ``train_length`` only needs to be valid.
  """
  freqs = rope_frequencies(head_dim, base=base)
  half = freqs.shape[0]
  if num_kept_bands is None:
    kept = hope_kept_bands(head_dim, train_length=train_length, base=base, min_periods=min_periods)
  else:
    _check_train_length(train_length)
    if isinstance(num_kept_bands, bool) or int(num_kept_bands) != num_kept_bands or not (
        0 <= num_kept_bands <= half):
      raise ValueError(f"num_kept_bands must be an integer in [0, {half}], got "
                       f"num_kept_bands={num_kept_bands!r}")
    kept = int(num_kept_bands)
  freqs[kept:] = 0.0
  return freqs


def nope_frequencies(head_dim: int) -> np.ndarray:
  """Returns NoPE's frequencies: all zeros, so the rotation is the identity."""
  return np.zeros(_check_head_dim(head_dim) // 2, np.float32)


def p_rope_frequencies(head_dim: int, *, p: float, base: float = 10000.0) -> np.ndarray:
  """Returns p-RoPE's frequencies (Barbero et al. 2024): RoPE's fastest round(p·head_dim/2) bands.

  The kept bands keep RoPE's own frequency values; the rest are 0.  p = 1 is RoPE, p = 0 is NoPE.
  """
  p = _check_fraction("p", p)
  freqs = rope_frequencies(head_dim, base=base)
  kept = int(round(p * freqs.shape[0]))
  freqs[kept:] = 0.0
  return freqs


def partial_rotary_frequencies(head_dim: int, *, fraction: float,
                               base: float = 10000.0) -> np.ndarray:
  """Returns GPT-NeoX partial rotary frequencies: RoPE recomputed over the rotated dims only.

  ``rotary_dim = int(fraction · head_dim)`` rounded down to even; bands i < rotary_dim/2 get
  θ_i = base^(−2i/rotary_dim) — faster decay than p-RoPE's, which keeps RoPE's values — and the rest
  are 0.  NeoX rotates the first rotary_dim channels with split-half pairing inside them; here
  pairs span the whole head, a fixed channel permutation of NeoX that learned projections absorb.
  """
  head_dim = _check_head_dim(head_dim)
  fraction = _check_fraction("fraction", fraction)
  rotary_dim = int(fraction * head_dim) // 2 * 2
  freqs = np.zeros(head_dim // 2, np.float32)
  if rotary_dim:
    freqs[: rotary_dim // 2] = rope_frequencies(rotary_dim, base=base)
  return freqs


# ----------------------------------------------------------------------------------------------
# Rotation.


def _turn_constants(freqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Returns float32 [NUM_DIGITS, bands] heads and tails of frac(2^{12j} θ_i / 2π), from float64."""
  theta = freqs.astype(np.float64)
  scales = 2.0 ** (_DIGIT_BITS * np.arange(_NUM_DIGITS, dtype=np.float64))
  turns = np.mod(np.outer(scales, theta) / (2.0 * math.pi), 1.0)
  heads = np.floor(turns * 2.0**_DIGIT_BITS) / 2.0**_DIGIT_BITS  # 12 significant bits: exact
  return heads.astype(np.float32), (turns - heads).astype(np.float32)


def _check_positions(positions) -> jax.Array:
  """Returns positions as an int32 array, or raises when they are not integers."""
  positions = jnp.asarray(positions)
  if not jnp.issubdtype(positions.dtype, jnp.integer):
    raise ValueError(f"positions must be integers, got dtype {positions.dtype}")
  return positions.astype(jnp.int32)


def rotation_angles(positions, frequencies) -> jax.Array:
  """Returns float32 angles position · θ_i reduced to [−π, π), shape positions.shape + [bands].

  Exact range reduction (see the module docstring); the result differs from the float64 product
  position × θ_i (θ_i as the float32 array holds it) by a few 1e-6 rad modulo 2π.
  """
  freqs = concrete_frequencies(frequencies)
  positions = _check_positions(positions)
  magnitude = jnp.abs(positions).astype(jnp.uint32)  # |INT32_MIN| = 2^31 fits in uint32.
  heads, tails = (jnp.asarray(c) for c in _turn_constants(freqs))
  turns = jnp.zeros(positions.shape + freqs.shape, jnp.float32)
  for j in range(_NUM_DIGITS):
    digit = ((magnitude >> (_DIGIT_BITS * j)) & (2**_DIGIT_BITS - 1)).astype(jnp.float32)[..., None]
    exact = digit * heads[j]  # < 2^24 units of 2^-12: exact, and so is its fractional part.
    turns = turns + (exact - jnp.floor(exact)) + digit * tails[j]
    turns = turns - jnp.floor(turns)  # back to [0, 1) after every digit
  turns = jnp.where(positions[..., None] < 0, -turns, turns)
  turns = turns - jnp.round(turns)  # [-0.5, 0.5]: smaller angles, smaller rounding in sin/cos
  return turns * jnp.float32(2.0 * math.pi)


def rotation_cos_sin(positions, frequencies) -> tuple[jax.Array, jax.Array, tuple[bool, ...]]:
  """Returns float32 cos and sin of rotation_angles [..., bands] and which bands rotate (θ_i > 0)."""
  freqs = concrete_frequencies(frequencies)
  angles = rotation_angles(positions, freqs)
  return jnp.cos(angles), jnp.sin(angles), tuple(bool(f > 0) for f in freqs)


def _split_pairs(x: jax.Array, layout: str) -> tuple[jax.Array, jax.Array]:
  """Returns the two members of each rotation pair for the given layout."""
  if layout == "split_half":
    half = x.shape[-1] // 2
    return x[..., :half], x[..., half:]
  return x[..., 0::2], x[..., 1::2]


def _merge_pairs(first: jax.Array, second: jax.Array, layout: str) -> jax.Array:
  """Inverse of _split_pairs."""
  if layout == "split_half":
    return jnp.concatenate([first, second], axis=-1)
  return jnp.stack([first, second], axis=-1).reshape(*first.shape[:-1], -1)


def _rotate_pairs(x: jax.Array, cos: jax.Array, sin: jax.Array, plan: tuple) -> jax.Array:
  """Rotates x's pairs by the angles whose cos/sin (every band) are given; plan is static.

  plan = (layout, rotating): ``rotating`` holds one boolean per band.  Every band goes through the
  same arithmetic, RoPE's, and the bands that do not rotate are selected back unchanged, so HoPE's
  pass is RoPE's pass: slicing out only the rotating bands and concatenating the rest back made
  XLA emit a fusion 18% slower than RoPE's as a standalone op (benchmarks/RESULTS.md §2.6).
  """
  layout, rotating = plan
  first, second = _split_pairs(x, layout)
  af, bf = first.astype(jnp.float32), second.astype(jnp.float32)
  new_a = (af * cos - bf * sin).astype(x.dtype)
  new_b = (bf * cos + af * sin).astype(x.dtype)
  if not all(rotating):  # unrotated bands come back bit-identical (−0.0 and non-finite values too)
    mask = jnp.asarray(np.asarray(rotating))
    new_a, new_b = jnp.where(mask, new_a, first), jnp.where(mask, new_b, second)
  return _merge_pairs(new_a, new_b, layout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _rotate(x: jax.Array, cos: jax.Array, sin: jax.Array, plan: tuple) -> jax.Array:
  """_rotate_pairs with a backward pass that is itself one rotation (by the negated angles).

  A rotation is orthogonal, so its vector-Jacobian product is the inverse rotation: one fused
  elementwise pass over the cotangent, where autodiff of the slices and concatenations would
  pad, add and copy.  Angles come from integer positions, so cos/sin get no gradient.
  """
  return _rotate_pairs(x, cos, sin, plan)


def _rotate_fwd(x, cos, sin, plan):
  """Forward pass of _rotate: keeps only cos and sin for the backward pass."""
  return _rotate_pairs(x, cos, sin, plan), (cos, sin)


def _rotate_bwd(plan, residuals, cotangent):
  """Backward pass of _rotate: rotates the cotangent back; cos and sin get zero cotangents."""
  cos, sin = residuals
  return (_rotate_pairs(cotangent, cos, -sin, plan), jnp.zeros_like(cos), jnp.zeros_like(sin))


_rotate.defvjp(_rotate_fwd, _rotate_bwd)


def apply_rotary(x: jax.Array, positions, frequencies, *,
                 layout: Layout = "split_half") -> jax.Array:
  """Rotates each pair i of x's last axis by position · frequencies[i]; 0-frequency pairs pass through.

  x: ``[..., seq, heads, head_dim]``; positions: integers ``[..., seq]`` broadcastable to
  ``x.shape[:-2]``; frequencies: concrete ``[head_dim // 2]``.  ``layout="split_half"`` pairs
  channel i with i + head_dim/2 (Llama/GPT-NeoX); ``"interleaved"`` pairs 2i with 2i + 1 (GPT-J).
  Sin and cos are computed in float32 and only the result is cast back to x.dtype.  Pairs whose
  frequency is 0 come out bit-identical to the input.  The gradient with respect to x is the
  inverse rotation of the cotangent (a custom VJP: one pass, like the forward).
  """
  if layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {LAYOUTS}, got layout={layout!r}")
  freqs = concrete_frequencies(frequencies)
  x = jnp.asarray(x)
  if x.ndim < 3 or x.shape[-1] != 2 * freqs.shape[0]:
    raise ValueError(f"x must be [..., seq, heads, head_dim] with head_dim = 2 × "
                     f"{freqs.shape[0]} bands, got x.shape={x.shape}")
  positions = _check_positions(positions)
  if not (freqs > 0).any():
    return x
  cos, sin, rotating = rotation_cos_sin(positions, freqs)
  return _rotate(x, cos[..., None, :], sin[..., None, :], (layout, rotating))  # [..., seq, 1, bands]


def apply_rope(x: jax.Array, positions, *, base: float = 10000.0,
               layout: Layout = "split_half") -> jax.Array:
  """Applies RoPE with θ_i = base^(−2i/head_dim) to x [..., seq, heads, head_dim]."""
  return apply_rotary(x, positions, rope_frequencies(x.shape[-1], base=base), layout=layout)


def apply_hope(x: jax.Array, positions, *, train_length: int, base: float = 10000.0,
               layout: Layout = "split_half") -> jax.Array:
  """Applies HoPE (RoPE's bands with ≥ 1 period within train_length; others unrotated) to x."""
  freqs = hope_frequencies(x.shape[-1], train_length=train_length, base=base)
  return apply_rotary(x, positions, freqs, layout=layout)
