"""Exact rotation angles for every integer dtype, and forward-mode autodiff of the rotation."""

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hope_jax.positional import encoders

# π to 200 digits, independent of the library's own (Machin) computation of 1/2π.
PI = Fraction(
  "3.14159265358979323846264338327950288419716939937510582097494459230781640628620899"
  "86280348253421170679821480865132823066470938446095505822317253594081284811174502"
  "8410270193852110555964462294895493038196"
)
FREQS = np.concatenate(
  [encoders.rope_frequencies(64), encoders.rope_frequencies(128, base=500000.0)]
)
ANGLE_TOLERANCE = 4e-6  # radians; measured: 1.2e-6 (32-bit positions), 1.7e-6 (64-bit)


def exact_angles(positions, freqs: np.ndarray) -> np.ndarray:
  """Returns position · θ (θ as float32 holds it) modulo 2π in [−π, π), in exact rationals."""
  out = np.zeros((len(positions), len(freqs)))
  for i, p in enumerate(positions):
    for k, theta in enumerate(freqs):
      angle = (int(p) * Fraction(float(theta))) % (2 * PI)
      out[i, k] = float(angle - 2 * PI if angle >= PI else angle)
  return out


def angle_error(positions, freqs: np.ndarray = FREQS) -> float:
  """Returns the largest angle error of rotation_angles against exact arithmetic, modulo 2π."""
  got = np.asarray(encoders.rotation_angles(positions, freqs), np.float64)
  want = exact_angles(np.asarray(positions).ravel().tolist(), freqs)
  return float(np.abs(np.angle(np.exp(1j * (got - want)))).max())


def rotate_reference(x: np.ndarray, angles: np.ndarray) -> np.ndarray:
  """Float64 split-half rotation of x [seq, heads, head_dim] by angles [seq, bands]."""
  x = np.asarray(x, np.float64)
  half = x.shape[-1] // 2
  cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
  a, b = x[..., :half], x[..., half:]
  return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


# ---------------------------------------------------------------------------------------------
# Angles for every integer dtype.


def test_int32_positions_exact():
  rng = np.random.default_rng(0)
  positions = np.concatenate([rng.integers(-(2**31), 2**31, 200), [2**31 - 1, -(2**31), 0, -1]])
  assert angle_error(positions.astype(np.int32)) < ANGLE_TOLERANCE


def test_uint32_positions_beyond_2_pow_31_exact():
  rng = np.random.default_rng(1)
  positions = np.concatenate([rng.integers(2**31, 2**32, 200), [2**32 - 1, 2**31, 0]])
  positions = positions.astype(np.uint32)
  assert angle_error(positions) < ANGLE_TOLERANCE
  assert angle_error(jnp.asarray(positions)) < ANGLE_TOLERANCE  # a device array as well
  # Not the int32 wrap-around: 2^32 − 1 is not −1.
  wrapped = encoders.rotation_angles(np.array([-1], np.int32), FREQS)
  assert not np.allclose(encoders.rotation_angles(np.array([2**32 - 1], np.uint32), FREQS), wrapped)


def test_small_integer_dtypes():
  for dtype in (np.int8, np.uint8, np.int16, np.uint16):
    info = np.iinfo(dtype)
    positions = np.array([info.min, info.max, 0, 1], dtype)
    assert angle_error(positions) < ANGLE_TOLERANCE


def test_int64_positions_exact_over_the_whole_range():
  rng = np.random.default_rng(2)
  positions = np.concatenate(
    [
      rng.integers(-(2**63), 2**63 - 1, 200, dtype=np.int64),
      np.array([2**63 - 1, -(2**63), 2**36, -(2**36), 2**31, 0], np.int64),
    ]
  )
  with jax.enable_x64(True):
    device = jnp.asarray(positions)
    assert device.dtype == jnp.int64
    assert angle_error(device) < ANGLE_TOLERANCE
    jitted = jax.jit(lambda p: encoders.rotation_angles(p, FREQS))(device)
    error = np.asarray(jitted, np.float64) - exact_angles(positions.tolist(), FREQS)
    assert np.abs(np.angle(np.exp(1j * error))).max() < ANGLE_TOLERANCE


def test_uint64_positions_exact_over_the_whole_range():
  rng = np.random.default_rng(3)
  positions = np.concatenate(
    [
      rng.integers(0, 2**64 - 1, 200, dtype=np.uint64, endpoint=True),
      np.array([2**64 - 1, 2**63, 0], np.uint64),
    ]
  )
  with jax.enable_x64(True):
    assert angle_error(jnp.asarray(positions)) < ANGLE_TOLERANCE


def test_int64_rotation_keeps_the_relative_position_property():
  freqs = encoders.rope_frequencies(64)
  rng = np.random.default_rng(4)
  q, k = rng.standard_normal((2, 1, 1, 64)).astype(np.float32)
  with jax.enable_x64(True):

    def score(pq: int, pk: int) -> float:
      rq = encoders.apply_rotary(q[None], jnp.array([pq], jnp.int64), freqs)
      rk = encoders.apply_rotary(k[None], jnp.array([pk], jnp.int64), freqs)
      return float(jnp.sum(rq.astype(jnp.float32) * rk.astype(jnp.float32)))

    base = 3 * 2**50 + 12345
    exact = float(np.sum(rotate_reference(q, exact_angles([77], freqs)) * k))
    for m, n in ((base + 77, base), (2**62 + 77, 2**62), (-(2**40) + 77, -(2**40))):
      assert abs(score(m, n) - exact) < 1e-4 * float(np.linalg.norm(q) * np.linalg.norm(k))


def test_apply_rotary_with_uint32_positions_matches_float64():
  freqs = encoders.hope_frequencies(64, train_length=512)
  positions = np.array([2**32 - 1, 2**31 + 5, 3 * 2**30, 17], np.uint32)
  x = np.random.default_rng(5).standard_normal((4, 2, 64)).astype(np.float32)
  out = encoders.apply_rotary(x[None], positions, freqs)[0]
  expected = rotate_reference(x, exact_angles(positions.tolist(), freqs))
  np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize(
  "positions",
  [
    np.array([0, 2**31]),  # NumPy int64 beyond int32: would wrap to −2^31 without x64
    np.array([-(2**40)]),
    np.array([2**32], np.uint64),
    [0, 2**35],  # a Python list
  ],
)
def test_host_positions_that_would_wrap_raise(positions):
  with pytest.raises(ValueError, match=r"positions must fit in u?int32.*jax_enable_x64"):
    encoders.rotation_angles(positions, FREQS)
  x = jnp.zeros((1, len(positions), 1, 2 * FREQS.size))
  with pytest.raises(ValueError, match="positions"):
    encoders.apply_rotary(x, positions, FREQS)


def test_host_64_bit_positions_within_32_bits_are_accepted():
  positions = np.array([-(2**31), 2**31 - 1, 5], np.int64)
  np.testing.assert_array_equal(
    encoders.rotation_angles(positions, FREQS),
    encoders.rotation_angles(positions.astype(np.int32), FREQS),
  )
  unsigned = np.array([2**32 - 1], np.uint64)
  np.testing.assert_array_equal(
    encoders.rotation_angles(unsigned, FREQS),
    encoders.rotation_angles(unsigned.astype(np.uint32), FREQS),
  )


@pytest.mark.parametrize("positions", [np.array([1.0, 2.0]), np.array([True, False]), [0.5]])
def test_non_integer_positions_raise(positions):
  with pytest.raises(ValueError, match="positions must be integers"):
    encoders.rotation_angles(positions, FREQS)


# ---------------------------------------------------------------------------------------------
# Forward-mode autodiff.

FREQ_CASES = {
  "rope": encoders.rope_frequencies(32),
  "hope": encoders.hope_frequencies(32, train_length=64),
  "non_prefix": encoders.rope_frequencies(32) * (np.arange(16) % 3 != 1),
}


@pytest.mark.parametrize("layout", ["split_half", "interleaved"])
@pytest.mark.parametrize("name", sorted(FREQ_CASES))
def test_jvp_is_the_rotated_tangent(layout, name):
  freqs = FREQ_CASES[name]
  rng = np.random.default_rng(6)
  x, tangent = rng.standard_normal((2, 2, 12, 3, 32)).astype(np.float32)
  positions = rng.integers(0, 2**20, (2, 12)).astype(np.int32)
  rotate = jax.jit(lambda x: encoders.apply_rotary(x, positions, freqs, layout=layout))
  primal, tangent_out = jax.jvp(rotate, (x,), (tangent,))
  np.testing.assert_allclose(primal, rotate(x), rtol=0, atol=1e-6)  # another fusion: ~1 ulp
  # The rotation is linear in x: its tangent is the tangent rotated.
  np.testing.assert_allclose(tangent_out, rotate(tangent), rtol=0, atol=1e-6)
  # Through jit, and in bfloat16 (the tangent keeps x's dtype).
  xb, tb = jnp.asarray(x, jnp.bfloat16), jnp.asarray(tangent, jnp.bfloat16)
  _, tangent_b = jax.jit(lambda x, t: jax.jvp(rotate, (x,), (t,)))(xb, tb)
  assert tangent_b.dtype == jnp.bfloat16
  np.testing.assert_allclose(
    np.asarray(tangent_b, np.float32), np.asarray(rotate(tb), np.float32), rtol=0, atol=2e-2
  )


@pytest.mark.parametrize("layout", ["split_half", "interleaved"])
def test_jacfwd_equals_jacrev_and_is_orthogonal(layout):
  freqs = encoders.hope_frequencies(16, train_length=16)  # 3 of 8 bands rotate
  x = np.random.default_rng(7).standard_normal((2, 1, 16)).astype(np.float32)
  positions = np.array([5, 70000], np.int32)
  rotate = lambda x: encoders.apply_rotary(x, positions, freqs, layout=layout)
  forward, reverse = jax.jit(jax.jacfwd(rotate))(x), jax.jit(jax.jacrev(rotate))(x)
  np.testing.assert_allclose(forward, reverse, rtol=0, atol=1e-6)
  jacobian = np.asarray(forward, np.float64).reshape(x.size, x.size)
  np.testing.assert_allclose(jacobian @ jacobian.T, np.eye(x.size), rtol=0, atol=1e-5)
  # Second order too: the rotation is linear, so its Hessian is zero.
  hessian = jax.jit(jax.hessian(lambda x: jnp.sum(rotate(x))))(x)
  assert np.all(np.asarray(hessian) == 0)


def primitive_names(jaxpr) -> set[str]:
  """Returns the names of the primitives in a jaxpr and in the jaxprs nested in its equations."""
  names = set()
  for eqn in jaxpr.eqns:
    names.add(eqn.primitive.name)
    for param in eqn.params.values():
      inner = getattr(param, "jaxpr", param)
      if hasattr(inner, "eqns"):
        names |= primitive_names(inner)
  return names


@pytest.mark.parametrize("layout", ["split_half", "interleaved"])
@pytest.mark.parametrize("name", sorted(FREQ_CASES))
def test_backward_is_one_rotation(layout, name):
  """The gradient transposes the tangent rule: reshapes, a reverse and elementwise math only."""
  freqs = FREQ_CASES[name]
  with jax.default_device(jax.devices("cpu")[0]):  # compiled for the CPU on any host
    cos, sin, rotating = encoders.rotation_cos_sin(np.arange(16), freqs)
    x = jnp.ones((2, 16, 4, 32), jnp.bfloat16)
    rotate = lambda x: encoders._rotate(x, cos[:, None], sin[:, None], (layout, rotating))
    _, backward = jax.vjp(rotate, x)
    primitives = primitive_names(jax.make_jaxpr(backward)(x).jaxpr)
    assert not primitives & {"pad", "slice", "concatenate", "select_n", "gather", "scatter-add"}
    assert "rev" in primitives
    compiled = jax.jit(backward).lower(x).compile().as_text()
  entry = compiled.split("ENTRY")[1]
  assert entry.count(" fusion(") == 1, entry  # one pass over the cotangent, like the forward
