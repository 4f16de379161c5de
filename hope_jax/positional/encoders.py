"""Rotary-family positional encoders (RoPE, HoPE and baselines) as pure JAX functions.

A rotary encoder is described by a frequency array ``θ`` of shape ``[head_dim // 2]``: pair ``i``
of a query or key is rotated by the angle ``position · θ_i``.  A band whose frequency is exactly 0
is left unrotated (position-independent, like a NoPE channel); HoPE, NoPE, p-RoPE and partial
rotary are all expressed this way, and the context-extension transforms in
:mod:`hope_jax.positional.scaling` map one frequency array to another, so they apply to RoPE and
HoPE alike.

Numerics: angles are computed from integer positions with exact range reduction
(:mod:`hope_jax.positional._angles`): every position of every integer dtype — int32, uint32 and,
with ``jax_enable_x64``, int64 and uint64 — gets its angle within a few 1e-6 rad, where a float32
``position * θ`` drifts by ~0.02 rad near 10^6 and breaks the relative-position property; sin and
cos are taken in float32 and only the rotated result is cast back.  No sin/cos table is indexed
by position.  Frequencies are static configuration constants: the rotation needs them as
concrete arrays (NumPy or concrete JAX arrays), not tracers.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from hope_jax.positional import _angles

Layout = Literal["split_half", "interleaved"]
LAYOUTS: tuple[str, ...] = ("split_half", "interleaved")
Plan = tuple[str, tuple[bool, ...]]  # (layout, whether each band rotates): static


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


def concrete_frequencies(frequencies: ArrayLike) -> np.ndarray:
  """Returns the frequency array as float32 NumPy, or raises if it is a tracer or malformed."""
  try:
    freqs = np.asarray(frequencies)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError) as e:
    raise ValueError(
      "frequencies must be a concrete array (a static configuration constant), got a traced "
      "value; compute them outside jit, e.g. with rope_frequencies(...)"
    ) from e
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
  return (base**-exponents).astype(np.float32)


def hope_kept_bands(
  head_dim: int, *, train_length: int, base: float = 10000.0, min_periods: float = 1.0
) -> int:
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


def hope_frequencies(
  head_dim: int,
  *,
  train_length: int,
  base: float = 10000.0,
  num_kept_bands: int | None = None,
  min_periods: float = 1.0,
) -> np.ndarray:
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
    if (
      isinstance(num_kept_bands, bool)
      or int(num_kept_bands) != num_kept_bands
      or not (0 <= num_kept_bands <= half)
    ):
      raise ValueError(
        f"num_kept_bands must be an integer in [0, {half}], got num_kept_bands={num_kept_bands!r}"
      )
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


def partial_rotary_frequencies(
  head_dim: int, *, fraction: float, base: float = 10000.0
) -> np.ndarray:
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


def rotation_angles(positions: ArrayLike, frequencies: ArrayLike) -> jax.Array:
  """Returns float32 angles position · θ_i reduced to [−π, π], shape positions.shape + [bands].

  positions: integers of any dtype (64-bit ones need ``jax_enable_x64``; host values that would
  wrap raise).  Exact range reduction (see the module docstring); the result differs from the
  exact position × θ_i (θ_i as the float32 array holds it) by a few 1e-6 rad modulo 2π.
  """
  freqs = concrete_frequencies(frequencies)
  return _angles.reduced_angles(_angles.check_positions(positions), freqs)


def rotation_cos_sin(
  positions: ArrayLike, frequencies: ArrayLike
) -> tuple[jax.Array, jax.Array, tuple[bool, ...]]:
  """Returns float32 cos and sin of rotation_angles [..., bands], and which bands rotate (θ > 0)."""
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


def _rotate_pairs(x: jax.Array, cos: jax.Array, sin: jax.Array, plan: Plan) -> jax.Array:
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


def _rotate_linear(x: jax.Array, cos: jax.Array, sin: jax.Array, plan: Plan) -> jax.Array:
  """The rotation as a linear map of x whose transpose is one rotation too (by the negated angles).

  Each head is viewed as pairs [..., 2, bands] (split-half) or [..., bands, 2] (interleaved), and
  rotated as x · cos + flip(x) · (∓sin): reshapes, a reverse and elementwise math, which transpose
  into the same (autodiff of the slices and concatenation of ``_rotate_pairs`` would pad, select
  and add).  Unrotated bands get cos 1 and sin 0, so a finite tangent passes them unchanged.
  """
  layout, rotating = plan
  if not all(rotating):
    mask = np.asarray(rotating)
    cos, sin = jnp.where(mask, cos, 1.0), jnp.where(mask, sin, 0.0)
  half = x.shape[-1] // 2
  if layout == "split_half":
    pair_axis, pairs_shape, signs = -2, (2, half), np.array([[-1.0], [1.0]], np.float32)
  else:
    pair_axis, pairs_shape, signs = -1, (half, 2), np.array([-1.0, 1.0], np.float32)
  cos, sin = jnp.expand_dims(cos, pair_axis), jnp.expand_dims(sin, pair_axis) * signs
  pairs = x.reshape(x.shape[:-1] + pairs_shape).astype(jnp.float32)
  turned = pairs * cos + jnp.flip(pairs, axis=pair_axis) * sin
  return turned.astype(x.dtype).reshape(x.shape)


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def _rotate(x: jax.Array, cos: jax.Array, sin: jax.Array, plan: Plan) -> jax.Array:
  """_rotate_pairs with a tangent rule that rotates the tangent (``_rotate_linear``).

  Forward-mode autodiff (``jax.jvp``, ``jacfwd``) works, and reverse mode transposes the tangent
  rule: the gradient is the cotangent rotated back in one fused elementwise pass.  Angles come
  from integer positions, so cos/sin are treated as constants (their tangents are ignored).
  """
  return _rotate_pairs(x, cos, sin, plan)


@_rotate.defjvp
def _rotate_jvp(
  plan: Plan,
  primals: tuple[jax.Array, jax.Array, jax.Array],
  tangents: tuple[jax.Array, jax.Array, jax.Array],
) -> tuple[jax.Array, jax.Array]:
  """Tangent rule of _rotate: the primal rotation, and x's tangent rotated by the same angles."""
  x, cos, sin = primals
  return _rotate_pairs(x, cos, sin, plan), _rotate_linear(tangents[0], cos, sin, plan)


def apply_rotary(
  x: jax.Array, positions: ArrayLike, frequencies: ArrayLike, *, layout: Layout = "split_half"
) -> jax.Array:
  """Rotates each pair i of x's last axis by position · frequencies[i]; 0-frequency pairs pass.

  x: ``[..., seq, heads, head_dim]``; positions: integers ``[..., seq]`` broadcastable to
  ``x.shape[:-2]``; frequencies: concrete ``[head_dim // 2]``.  ``layout="split_half"`` pairs
  channel i with i + head_dim/2 (Llama/GPT-NeoX); ``"interleaved"`` pairs 2i with 2i + 1 (GPT-J).
  Sin and cos are computed in float32 and only the result is cast back to x.dtype.  Pairs whose
  frequency is 0 come out bit-identical to the input.  Forward- and reverse-mode autodiff work;
  the gradient with respect to x is the inverse rotation of the cotangent (one pass, like the
  forward).
  """
  if layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {LAYOUTS}, got layout={layout!r}")
  freqs = concrete_frequencies(frequencies)
  x = jnp.asarray(x)
  if x.ndim < 3 or x.shape[-1] != 2 * freqs.shape[0]:
    raise ValueError(
      f"x must be [..., seq, heads, head_dim] with head_dim = 2 × "
      f"{freqs.shape[0]} bands, got x.shape={x.shape}"
    )
  positions = _angles.check_positions(positions)
  if not (freqs > 0).any():
    return x
  cos, sin, rotating = rotation_cos_sin(positions, freqs)
  cos, sin = cos[..., None, :], sin[..., None, :]  # [..., seq, 1, bands]: one angle for all heads
  return _rotate(x, cos, sin, (layout, rotating))


def apply_rope(
  x: jax.Array, positions: ArrayLike, *, base: float = 10000.0, layout: Layout = "split_half"
) -> jax.Array:
  """Applies RoPE with θ_i = base^(−2i/head_dim) to x [..., seq, heads, head_dim]."""
  return apply_rotary(x, positions, rope_frequencies(x.shape[-1], base=base), layout=layout)


def apply_hope(
  x: jax.Array,
  positions: ArrayLike,
  *,
  train_length: int,
  base: float = 10000.0,
  layout: Layout = "split_half",
) -> jax.Array:
  """Applies HoPE (RoPE's bands with ≥ 1 period within train_length; others unrotated) to x."""
  freqs = hope_frequencies(x.shape[-1], train_length=train_length, base=base)
  return apply_rotary(x, positions, freqs, layout=layout)
