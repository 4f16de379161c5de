"""The loss's forward reduction: XLA and Pallas (interpret mode on CPU) against float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from device_helpers import kernel_mesh
from flax import nnx

from hope_jax.kernels import loss as fused_loss
from hope_jax.parallel import sharding

needs_pallas = pytest.mark.skipif(
  fused_loss.plgpu is None, reason="this JAX has no Pallas Triton backend"
)
IMPLS = ["xla", pytest.param("pallas", marks=needs_pallas)]


def _inputs(shape, seed=0, spread=4.0):
  rng = np.random.default_rng(seed)
  logits = spread * rng.standard_normal(shape)
  labels = rng.integers(0, shape[-1], shape[:-1])
  return logits, labels


def _reference(logits, labels):
  """float64 logsumexp and label logit of the given (already rounded) values."""
  x = np.asarray(logits, np.float64)
  peak = x.max(-1, keepdims=True)
  lse = (peak + np.log(np.exp(x - peak).sum(-1, keepdims=True)))[..., 0]
  return lse, np.take_along_axis(x, labels[..., None], -1)[..., 0]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", [(2, 5, 37), (3, 7, 3000), (1, 4, 4096)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_logsumexp_and_label_match_float64(impl, shape, dtype):
  """Vocabularies below, across and at whole chunks; odd row counts; both dtypes."""
  logits, labels = _inputs(shape, seed=shape[-1])
  x = jnp.asarray(logits, dtype)
  lse, picked = fused_loss.logsumexp_and_label(x, jnp.asarray(labels), implementation=impl)
  assert lse.dtype == picked.dtype == jnp.float32 and lse.shape == labels.shape
  ref_lse, ref_picked = _reference(np.asarray(x.astype(jnp.float32)), labels)
  np.testing.assert_allclose(lse, ref_lse, rtol=1e-6, atol=1e-5)
  np.testing.assert_array_equal(picked, ref_picked.astype(np.float32))


@pytest.mark.parametrize("impl", IMPLS)
def test_large_and_negative_infinite_logits(impl):
  """A running max keeps huge logits finite; −inf entries (masked classes) count as zero mass."""
  logits = np.zeros((3, 1, 5000), np.float32)
  logits[0, 0, :] = -1e4
  logits[0, 0, 4900] = 1e4  # the peak sits in the last chunk
  logits[1, 0, 1000:] = -np.inf
  logits[2, 0, :4500] = -np.inf  # whole chunks of −inf before the first finite logit
  labels = np.array([[4900], [3], [4700]])
  lse, picked = fused_loss.logsumexp_and_label(
    jnp.asarray(logits), jnp.asarray(labels), implementation=impl
  )
  np.testing.assert_allclose(lse, [[1e4], [np.log(1000.0)], [np.log(500.0)]], rtol=1e-6)
  np.testing.assert_array_equal(picked, [[1e4], [0.0], [0.0]])


@needs_pallas
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_token_nll_and_gradient_are_the_same_with_either_implementation(dtype):
  logits, labels = _inputs((2, 9, 700), seed=5)
  g = np.random.default_rng(6).standard_normal((2, 9))
  x, labels = jnp.asarray(logits, dtype), jnp.asarray(labels)
  out = {}
  for impl in ("xla", "pallas"):
    nll, vjp = jax.vjp(lambda x, impl=impl: fused_loss.token_nll(x, labels, impl), x)
    out[impl] = (nll, vjp(jnp.asarray(g, jnp.float32))[0])
  np.testing.assert_allclose(out["pallas"][0], out["xla"][0], rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(
    np.asarray(out["pallas"][1], np.float32),
    np.asarray(out["xla"][1], np.float32),
    rtol=1e-5,
    atol=1e-6,
  )


def _mesh(shape):
  return kernel_mesh(*shape)


@needs_pallas
def test_pallas_under_a_mesh_and_a_sharded_vocabulary():
  """shard_mapped over batch and length on 8 devices; a sharded vocabulary is refused."""
  logits, labels = _inputs((8, 4, 300), seed=7)
  x, labels = jnp.asarray(logits, jnp.float32), jnp.asarray(labels)
  expected = fused_loss.logsumexp_and_label(x, labels, implementation="xla")
  fn = jax.jit(lambda x, y: fused_loss.logsumexp_and_label(x, y, implementation="pallas"))
  with jax.set_mesh(_mesh((2, 4, 1))), nnx.logical_axis_rules(sharding.DEFAULT_RULES):
    got = fn(x, labels)
  for a, b in zip(got, expected):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-5)
  with (
    jax.set_mesh(_mesh((2, 2, 2))),
    nnx.logical_axis_rules(sharding.DEFAULT_RULES),
    pytest.raises(ValueError, match="vocabulary axis unsharded"),
  ):
    fn(x, labels)
