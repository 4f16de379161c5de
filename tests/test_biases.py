"""Tests of the ALiBi and KERPLE logit biases."""

import math

import jax.numpy as jnp
import numpy as np
import pytest

from hope_jax.positional import biases


def reference_slopes(n: int) -> list[float]:
  """The ALiBi paper's reference get_slopes, verbatim in logic."""

  def get_slopes_power_of_2(n):
    start = 2 ** (-(2 ** -(math.log2(n) - 3)))
    return [start * start**i for i in range(n)]

  if math.log2(n).is_integer():
    return get_slopes_power_of_2(n)
  closest = 2 ** math.floor(math.log2(n))
  return get_slopes_power_of_2(closest) + reference_slopes(2 * closest)[0::2][: n - closest]


@pytest.mark.parametrize("heads", [1, 2, 8, 12, 16, 20, 32])
def test_alibi_slopes_match_reference(heads):
  np.testing.assert_allclose(biases.alibi_slopes(heads), reference_slopes(heads), rtol=1e-7)


def test_alibi_slopes_known_values():
  np.testing.assert_allclose(biases.alibi_slopes(8), [2.0**-k for k in range(1, 9)])
  twelve = biases.alibi_slopes(12)
  np.testing.assert_allclose(twelve[:8], [2.0**-k for k in range(1, 9)])
  np.testing.assert_allclose(twelve[8:], [2.0**-0.5, 2.0**-1.5, 2.0**-2.5, 2.0**-3.5], rtol=1e-6)


def test_alibi_bias_values_and_shape():
  slopes = biases.alibi_slopes(4)
  bias = biases.alibi_bias(jnp.arange(5), jnp.arange(5), slopes)
  assert bias.shape == (4, 5, 5)
  q, k = np.meshgrid(np.arange(5), np.arange(5), indexing="ij")
  np.testing.assert_allclose(bias, -slopes[:, None, None] * np.abs(q - k)[None])
  batched = biases.alibi_bias(jnp.arange(6).reshape(2, 3), jnp.arange(6).reshape(2, 3), slopes)
  assert batched.shape == (2, 4, 3, 3)


def test_kerple_log_bias():
  p = jnp.array([1.0, 2.0])
  a = jnp.array([0.5, 3.0])
  bias = biases.kerple_log_bias(jnp.arange(4), jnp.arange(4), p=p, a=a)
  q, k = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
  expected = -np.asarray(p)[:, None, None] * np.log1p(np.asarray(a)[:, None, None] * np.abs(q - k))
  np.testing.assert_allclose(bias, expected, rtol=1e-6)
  assert np.all(np.diagonal(np.asarray(bias), axis1=-2, axis2=-1) == 0)


def test_bias_errors_name_the_field():
  with pytest.raises(ValueError, match="num_heads"):
    biases.alibi_slopes(0)
  with pytest.raises(ValueError, match="q_positions"):
    biases.alibi_bias(jnp.arange(3.0), jnp.arange(3), biases.alibi_slopes(2))
