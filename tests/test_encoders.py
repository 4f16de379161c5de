"""Tests of hope_jax.positional.encoders against a float64 NumPy reference."""

import math

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hope_jax.positional import encoders


def reference_rotary(
  x: np.ndarray, positions: np.ndarray, freqs: np.ndarray, layout: str = "split_half"
) -> np.ndarray:
  """Float64 rotation of x [..., seq, heads, head_dim] with the same frequency values."""
  x = np.asarray(x, np.float64)
  angles = positions.astype(np.float64)[..., None] * freqs.astype(np.float64)  # [..., seq, bands]
  cos, sin = np.cos(angles)[..., None, :], np.sin(angles)[..., None, :]
  if layout == "split_half":
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)
  a, b = x[..., 0::2], x[..., 1::2]
  out = np.empty_like(x)
  out[..., 0::2], out[..., 1::2] = a * cos - b * sin, b * cos + a * sin
  return out


def random_x(shape, dtype=jnp.float32, seed=0):
  return jax.random.normal(jax.random.key(seed), shape, jnp.float32).astype(dtype)


def relative_error(actual, expected) -> float:
  actual = np.asarray(actual, np.float64)
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


# ---------------------------------------------------------------------------------------------
# Frequencies.


def test_rope_frequencies_values():
  freqs = encoders.rope_frequencies(8, base=10000.0)
  assert freqs.dtype == np.float32 and freqs.shape == (4,)
  np.testing.assert_allclose(freqs, [1.0, 0.1, 0.01, 0.001], rtol=1e-6)


@pytest.mark.parametrize(
  "head_dim, base, train_length, kept",
  [(64, 10000.0, 512, 16), (64, 10000.0, 4096, 23), (128, 500000.0, 4096, 32)],
)
def test_hope_kept_band_counts(head_dim, base, train_length, kept):
  freqs = encoders.hope_frequencies(head_dim, train_length=train_length, base=base)
  assert np.count_nonzero(freqs) == kept
  assert encoders.hope_kept_bands(head_dim, train_length=train_length, base=base) == kept
  # The kept bands are the fastest ones, with RoPE's own values, and each turns ≥ once within L.
  rope = encoders.rope_frequencies(head_dim, base=base)
  np.testing.assert_array_equal(freqs[:kept], rope[:kept])
  assert np.all(freqs[kept:] == 0)
  assert np.all(2 * math.pi / freqs[:kept].astype(np.float64) <= train_length)
  assert 2 * math.pi / float(rope[kept]) > train_length


def test_hope_keeps_fastest_band_when_none_passes():
  freqs = encoders.hope_frequencies(64, train_length=2)  # 2π/2 > θ_0 = 1: no band passes
  assert np.count_nonzero(freqs) == 1 and freqs[0] == 1.0


def test_hope_explicit_cutoff_and_min_periods():
  explicit = encoders.hope_frequencies(64, train_length=512, num_kept_bands=5)
  assert np.count_nonzero(explicit) == 5
  assert np.count_nonzero(encoders.hope_frequencies(64, train_length=512, num_kept_bands=0)) == 0
  stricter = encoders.hope_frequencies(64, train_length=512, min_periods=4.0)
  assert np.count_nonzero(stricter) < 16
  assert np.all(stricter[stricter > 0] >= 2 * math.pi * 4 / 512)


def test_hope_with_long_train_length_equals_rope():
  hope = encoders.hope_frequencies(64, train_length=10**9)
  np.testing.assert_array_equal(hope, encoders.rope_frequencies(64))
  x = random_x((1, 12, 2, 64))
  pos = jnp.arange(12)
  np.testing.assert_array_equal(
    encoders.apply_hope(x, pos, train_length=10**9), encoders.apply_rope(x, pos)
  )


def test_p_rope_zero_is_nope_and_one_is_rope():
  np.testing.assert_array_equal(
    encoders.p_rope_frequencies(64, p=0.0), encoders.nope_frequencies(64)
  )
  np.testing.assert_array_equal(
    encoders.p_rope_frequencies(64, p=1.0), encoders.rope_frequencies(64)
  )
  x = random_x((2, 9, 3, 64))
  out = encoders.apply_rotary(x, jnp.arange(9), encoders.p_rope_frequencies(64, p=0.0))
  np.testing.assert_array_equal(out, x)


def test_p_rope_and_partial_rotary_differ():
  p_rope = encoders.p_rope_frequencies(64, p=0.25)
  partial = encoders.partial_rotary_frequencies(64, fraction=0.25)
  assert np.count_nonzero(p_rope) == np.count_nonzero(partial) == 8
  # p-RoPE keeps RoPE's values; partial rotary recomputes over the 16 rotated dims.
  np.testing.assert_array_equal(p_rope[:8], encoders.rope_frequencies(64)[:8])
  np.testing.assert_allclose(partial[:8], encoders.rope_frequencies(16), rtol=0)
  assert not np.allclose(p_rope, partial)
  x = random_x((1, 32, 2, 64))
  pos = jnp.arange(32)
  assert not np.allclose(
    encoders.apply_rotary(x, pos, p_rope), encoders.apply_rotary(x, pos, partial)
  )


# ---------------------------------------------------------------------------------------------
# Rotation against the float64 reference.


@pytest.mark.parametrize("layout", ["split_half", "interleaved"])
@pytest.mark.parametrize("name", ["rope", "hope", "p_rope", "partial"])
def test_float32_matches_float64_reference(layout, name):
  freqs = {
    "rope": encoders.rope_frequencies(64),
    "hope": encoders.hope_frequencies(64, train_length=512),
    "p_rope": encoders.p_rope_frequencies(64, p=0.5),
    "partial": encoders.partial_rotary_frequencies(64, fraction=0.5),
  }[name]
  rng = np.random.default_rng(1)
  positions = rng.integers(0, 2**14, size=(2, 64)).astype(np.int32)
  positions[0, :3] = [0, 2**14 - 1, 2**14]
  x = random_x((2, 64, 4, 64))
  out = encoders.apply_rotary(x, positions, freqs, layout=layout)
  assert out.dtype == jnp.float32 and out.shape == x.shape
  assert relative_error(out, reference_rotary(np.asarray(x), positions, freqs, layout)) < 1e-5


@pytest.mark.parametrize("layout", ["split_half", "interleaved"])
def test_bfloat16_matches_float64_reference(layout):
  freqs = encoders.rope_frequencies(128, base=500000.0)
  positions = np.arange(0, 2**14, 128, dtype=np.int32)
  x = random_x((1, positions.size, 2, 128), jnp.bfloat16)
  out = encoders.apply_rotary(x, positions, freqs, layout=layout)
  assert out.dtype == jnp.bfloat16
  reference = reference_rotary(np.asarray(x.astype(jnp.float32)), positions, freqs, layout)
  assert relative_error(out.astype(jnp.float32), reference) < 1e-2


@pytest.mark.parametrize("layout", ["split_half", "interleaved"])
def test_zero_frequency_bands_are_bit_identical(layout):
  freqs = encoders.hope_frequencies(64, train_length=512)
  # Non-prefix pattern too, to exercise the masked path.
  scattered = encoders.rope_frequencies(64)
  scattered[1::3] = 0.0
  for f in (freqs, scattered):
    for dtype in (jnp.float32, jnp.bfloat16):
      x = random_x((2, 33, 3, 64), dtype)
      x = x.at[0, 0, 0].set(-0.0)  # negative zeros must survive as well
      x = x.at[1, 2, 1].set(jnp.inf)  # and infinities, whose rotated partners turn NaN
      out = encoders.apply_rotary(x, jnp.arange(33) * 977, f, layout=layout)
      zero = np.flatnonzero(f == 0)
      idx = (
        np.concatenate([zero, zero + 32])
        if layout == "split_half"
        else np.concatenate([2 * zero, 2 * zero + 1])
      )
      got = np.asarray(out[..., idx]).view(np.uint16 if dtype == jnp.bfloat16 else np.uint32)
      want = np.asarray(x[..., idx]).view(got.dtype)
      np.testing.assert_array_equal(got, want)


def test_positions_broadcast_over_batch():
  x = random_x((3, 10, 2, 16))
  freqs = encoders.rope_frequencies(16)
  shared = encoders.apply_rotary(x, jnp.arange(10), freqs)
  per_row = encoders.apply_rotary(x, jnp.tile(jnp.arange(10), (3, 1)), freqs)
  np.testing.assert_array_equal(shared, per_row)


def test_interleaved_is_a_channel_permutation_of_split_half():
  freqs = encoders.rope_frequencies(16)
  x = random_x((1, 7, 2, 16))
  perm = np.concatenate([np.arange(0, 16, 2), np.arange(1, 16, 2)])  # interleaved → split-half
  inter = encoders.apply_rotary(x, jnp.arange(7), freqs, layout="interleaved")
  split = encoders.apply_rotary(x[..., perm], jnp.arange(7), freqs, layout="split_half")
  np.testing.assert_allclose(inter[..., perm], split, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Phase accuracy and the relative-position property.


def test_phase_accuracy_up_to_2_pow_20():
  freqs = encoders.rope_frequencies(128, base=500000.0)
  rng = np.random.default_rng(2)
  positions = np.concatenate([rng.integers(0, 2**20, 4000), [2**20, 2**20 - 1, 999_983]])
  positions = positions.astype(np.int32)
  angles = np.asarray(encoders.rotation_angles(positions, freqs), np.float64)
  exact = np.outer(positions.astype(np.float64), freqs.astype(np.float64))
  error = np.abs(np.angle(np.exp(1j * (angles - exact))))
  assert error.max() < 1e-3
  # The usual float32 product is not good enough: that is why range reduction exists.
  naive = np.outer(positions.astype(np.float32), freqs).astype(np.float64)
  assert np.abs(np.angle(np.exp(1j * (naive - exact)))).max() > 1e-2


def test_phase_accuracy_over_all_int32_positions():
  freqs = encoders.rope_frequencies(64)
  rng = np.random.default_rng(3)
  positions = np.concatenate(
    [rng.integers(-(2**31) + 1, 2**31 - 1, 4000), [2**31 - 1, -(2**31) + 1, -1, 0]]
  ).astype(np.int32)
  angles = np.asarray(encoders.rotation_angles(positions, freqs), np.float64)
  exact = np.outer(positions.astype(np.float64), freqs.astype(np.float64))
  assert np.abs(np.angle(np.exp(1j * (angles - exact)))).max() < 1e-4


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
  m=st.integers(45_000, 55_000),
  n=st.integers(45_000, 55_000),
  shift=st.integers(-40_000, 40_000),
  seed=st.integers(0, 2**16),
)
def test_inner_product_depends_only_on_offset(m, n, shift, seed):
  freqs = encoders.rope_frequencies(64)
  q = random_x((1, 1, 64), seed=seed)
  k = random_x((1, 1, 64), seed=seed + 1)

  def score(pq, pk):
    rq = encoders.apply_rotary(q, jnp.array([pq]), freqs)
    rk = encoders.apply_rotary(k, jnp.array([pk]), freqs)
    return float(jnp.sum(rq * rk))

  scale = float(jnp.linalg.norm(q) * jnp.linalg.norm(k))
  assert abs(score(m, n) - score(m + shift, n + shift)) < 1e-4 * scale
  # And it equals the float64 value at the offset alone.
  exact = np.sum(reference_rotary(np.asarray(q), np.array([m - n]), freqs) * np.asarray(k))
  assert abs(score(m, n) - exact) < 1e-4 * scale


# ---------------------------------------------------------------------------------------------
# Transformations and errors.


def test_jit_vmap_grad():
  freqs = encoders.hope_frequencies(32, train_length=64)
  x = random_x((4, 8, 2, 32))
  pos = jnp.arange(8)
  eager = encoders.apply_rotary(x, pos, freqs)
  jitted = jax.jit(lambda x, p: encoders.apply_rotary(x, p, freqs))(x, pos)
  np.testing.assert_allclose(jitted, eager, rtol=1e-6, atol=1e-6)
  vmapped = jax.vmap(lambda xi: encoders.apply_rotary(xi, pos, freqs))(x)
  np.testing.assert_allclose(vmapped, eager, rtol=1e-6, atol=1e-6)
  # A rotation is orthogonal: the gradient of ½|R x|² is x itself.
  grad = jax.grad(lambda x: 0.5 * jnp.sum(encoders.apply_rotary(x, pos, freqs) ** 2))(x)
  np.testing.assert_allclose(grad, x, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["split_half", "interleaved"])
@pytest.mark.parametrize("name", ["rope", "hope", "non_prefix"])
def test_vjp_is_the_inverse_rotation_float64(layout, name):
  freqs = {
    "rope": encoders.rope_frequencies(64),
    "hope": encoders.hope_frequencies(64, train_length=512),
    "non_prefix": encoders.rope_frequencies(64) * (np.arange(32) % 3 != 1),  # masked path
  }[name]
  rng = np.random.default_rng(2)
  positions = rng.integers(0, 2**16, size=(2, 48)).astype(np.int32)
  x, cotangent = random_x((2, 48, 3, 64), seed=3), random_x((2, 48, 3, 64), seed=4)
  _, vjp = jax.vjp(lambda x: encoders.apply_rotary(x, positions, freqs, layout=layout), x)
  (grad,) = vjp(cotangent)
  # Rᵀ g = R(−θ) g: rotating by the negated positions.
  expected = reference_rotary(np.asarray(cotangent), -positions, freqs, layout)
  assert grad.dtype == jnp.float32
  assert relative_error(grad, expected) < 1e-5
  # The same through jit and through a bfloat16 input (the cotangent then is bfloat16).
  xb = x.astype(jnp.bfloat16)
  _, vjp_b = jax.jit(
    lambda x: jax.vjp(lambda x: encoders.apply_rotary(x, positions, freqs, layout=layout), x)
  )(xb)
  (grad_b,) = vjp_b(cotangent.astype(jnp.bfloat16))
  assert grad_b.dtype == jnp.bfloat16 and relative_error(grad_b, expected) < 1e-2


def test_traced_frequencies_are_rejected():
  x = random_x((1, 4, 1, 8))
  with pytest.raises(ValueError, match="concrete"):
    jax.jit(lambda f: encoders.apply_rotary(x, jnp.arange(4), f))(encoders.rope_frequencies(8))


@pytest.mark.parametrize(
  "call, field",
  [
    (lambda: encoders.rope_frequencies(63), "head_dim"),
    (lambda: encoders.rope_frequencies(0), "head_dim"),
    (lambda: encoders.rope_frequencies(64, base=1.0), "base"),
    (lambda: encoders.hope_frequencies(64, train_length=0), "train_length"),
    (lambda: encoders.hope_frequencies(64, train_length=-5), "train_length"),
    (lambda: encoders.hope_frequencies(64, train_length=512, num_kept_bands=33), "num_kept_bands"),
    (lambda: encoders.p_rope_frequencies(64, p=1.5), "p"),
    (lambda: encoders.p_rope_frequencies(64, p=-0.1), "p"),
    (lambda: encoders.partial_rotary_frequencies(64, fraction=2.0), "fraction"),
    (lambda: encoders.apply_rope(random_x((1, 4, 1, 8)), jnp.arange(4.0)), "positions"),
    (lambda: encoders.apply_rope(random_x((1, 4, 1, 8)), jnp.arange(4), layout="x"), "layout"),
  ],
)
def test_bad_values_name_the_field(call, field):
  with pytest.raises(ValueError, match=field):
    call()
