"""Fused add + RMSNorm: XLA and Pallas (interpret mode on CPU) against a float64 reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from device_helpers import kernel_mesh
from flax import nnx

from hope_jax.kernels import norm as fused_norm
from hope_jax.parallel import sharding

EPS = 1e-5
needs_pallas = pytest.mark.skipif(
  fused_norm.plgpu is None, reason="this JAX has no Pallas Triton backend"
)


def reference(x, update, scale, weights_s, weights_n):
  """float64: s, n and the gradients of sum(s·weights_s) + sum(n·weights_n)."""
  s = x + update
  ms = np.mean(s * s, axis=-1, keepdims=True) + EPS
  r = ms**-0.5
  n = s * r * scale
  g = weights_n * scale
  ds = weights_s + r * g - s * r**3 * np.mean(g * s, axis=-1, keepdims=True)
  dscale = np.sum(weights_n * s * r, axis=tuple(range(s.ndim - 1)))
  return s, n, ds, dscale


def _inputs(shape=(2, 8, 48), seed=0):
  rng = np.random.default_rng(seed)
  x, update, ws, wn = (rng.standard_normal(shape) for _ in range(4))
  scale = 1.0 + 0.1 * rng.standard_normal(shape[-1])
  return x, update, scale, ws, wn


def _loss_and_grads(impl, x, update, scale, ws, wn, dtype=jnp.float32):
  def loss(x, update, scale):
    s, n = fused_norm.IMPLEMENTATIONS[impl](x, update, scale, eps=EPS, out_dtype=dtype)
    return jnp.sum(s.astype(jnp.float32) * ws) + jnp.sum(n.astype(jnp.float32) * wn), (s, n)

  args = (jnp.asarray(x, dtype), jnp.asarray(update, dtype), jnp.asarray(scale, jnp.float32))
  (_, (s, n)), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(*args)
  return s, n, grads


@pytest.mark.parametrize("impl", ["xla", pytest.param("pallas", marks=needs_pallas)])
def test_add_rms_norm_and_its_gradients_match_float64(impl):
  x, update, scale, ws, wn = _inputs()
  s_ref, n_ref, ds_ref, dscale_ref = reference(x, update, scale, ws, wn)
  s, n, (dx, dupdate, dscale) = _loss_and_grads(impl, x, update, scale, ws, wn)
  np.testing.assert_allclose(s, s_ref, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(n, n_ref, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx, ds_ref, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(dupdate, ds_ref, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(dscale, dscale_ref, rtol=1e-4, atol=1e-4)


@needs_pallas
def test_pallas_matches_xla_in_bfloat16():
  """Same rounding points: the residual sum is bit-identical, the norm within one bf16 ulp."""
  x, update, scale, ws, wn = _inputs((2, 16, 96), seed=1)
  s_x, n_x, g_x = _loss_and_grads("xla", x, update, scale, ws, wn, jnp.bfloat16)
  s_p, n_p, g_p = _loss_and_grads("pallas", x, update, scale, ws, wn, jnp.bfloat16)
  np.testing.assert_array_equal(np.asarray(s_p, np.float32), np.asarray(s_x, np.float32))
  np.testing.assert_allclose(
    np.asarray(n_p, np.float32), np.asarray(n_x, np.float32), rtol=2**-7, atol=1e-6
  )
  for a, b in zip(g_p, g_x):
    np.testing.assert_allclose(
      np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=2**-6, atol=2e-2
    )


@needs_pallas
def test_plain_norm_without_update():
  x, _, scale, _, wn = _inputs((3, 4, 40), seed=2)
  _, n_ref, ds_ref, dscale_ref = reference(x, 0.0, scale, 0.0, wn)
  for impl in ("xla", "pallas"):

    def loss(x, scale, impl=impl):
      s, n = fused_norm.IMPLEMENTATIONS[impl](x, None, scale, eps=EPS, out_dtype=jnp.float32)
      assert s is x
      return jnp.sum(n * wn)

    args = (jnp.asarray(x, jnp.float32), jnp.asarray(scale, jnp.float32))
    n = fused_norm.IMPLEMENTATIONS[impl](*args[:1], None, args[1], eps=EPS, out_dtype=jnp.float32)[
      1
    ]
    dx, dscale = jax.grad(loss, argnums=(0, 1))(*args)
    np.testing.assert_allclose(n, n_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, ds_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dscale, dscale_ref, rtol=1e-4, atol=1e-4)


def _mesh(shape):
  return kernel_mesh(*shape)


@needs_pallas
def test_pallas_under_a_mesh_matches_unsharded():
  """shard_mapped over batch and length on 8 devices, the scale sharded over fsdp."""
  x, update, scale, ws, wn = _inputs((4, 8, 48), seed=3)
  expected = _loss_and_grads("pallas", x, update, scale, ws, wn)
  mesh = _mesh((2, 2, 2))
  with jax.set_mesh(mesh), nnx.logical_axis_rules(sharding.DEFAULT_RULES):
    got = jax.jit(_loss_and_grads, static_argnums=0)("pallas", x, update, scale, ws, wn)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@needs_pallas
def test_pallas_refuses_a_sharded_embedding_axis():
  x, update, scale, ws, wn = _inputs((4, 8, 48), seed=3)
  rules = tuple(
    (name, "tensor" if name == "act_embed" else target) for name, target in sharding.DEFAULT_RULES
  )
  with (
    jax.set_mesh(_mesh((2, 2, 2))),
    nnx.logical_axis_rules(rules),
    pytest.raises(ValueError, match="act_embed"),
  ):
    _loss_and_grads("pallas", x, update, scale, ws, wn)
