"""The Transformer's small layers: parameters with logical axes, RMSNorm, SwiGLU and the float32 head product."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from hope_jax import kernels
from hope_jax.model.config import TransformerConfig
from hope_jax.parallel import sharding


def param(
  rngs: nnx.Rngs,
  shape: tuple[int, ...],
  axes: tuple[str | None, ...],
  *,
  std: float,
  dtype: Any,
  init: str = "normal",
) -> nnx.Param:
  """Returns an nnx.Param initialised N(0, std²) (or ones) that carries logical axis names."""
  initialisers = {
    "normal": lambda: std * jax.random.normal(rngs.params(), shape, dtype),
    "ones": lambda: jnp.ones(shape, dtype),
  }
  return nnx.Param(initialisers[init](), out_sharding=axes, eager_sharding=False)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def float32_logits(spec: str, x: jax.Array, w: jax.Array) -> jax.Array:
  """einsum(spec, x, w) accumulated and returned in float32; its backward multiplies in x's dtype.

  Autodiff of a float32-output product would hand the float32 cotangent to two float32 matrix
  products (x's and w's gradients, the largest in the step at a 16k vocabulary).  Here the
  cotangent is cast to the compute dtype first, as mixed-precision training does for every other
  layer, so both run as bf16 products with float32 accumulation; the forward logits stay float32.
  """
  return jnp.einsum(spec, x, w, preferred_element_type=jnp.float32)


def _float32_logits_fwd(spec, x, w):
  """Forward pass of float32_logits: keeps x and w."""
  return float32_logits(spec, x, w), (x, w)


def _float32_logits_bwd(spec, residuals, cotangent):
  """Backward pass of float32_logits: the product's VJP with the cotangent in x's dtype."""
  x, w = residuals
  _, vjp = jax.vjp(lambda x, w: jnp.einsum(spec, x, w), x, w)
  return vjp(cotangent.astype(x.dtype))


float32_logits.defvjp(_float32_logits_fwd, _float32_logits_bwd)


class RMSNorm(nnx.Module):
  """Root-mean-square layer norm with a learned scale, computed in float32."""

  def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
    """Creates the scale (ones)."""
    self.eps, self.dtype, self.impl = config.norm_eps, config.compute_jnp_dtype, config.norm_impl
    self.scale = param(
      rngs, (config.embed_dim,), ("embed",), std=0.0, dtype=config.param_jnp_dtype, init="ones"
    )

  def __call__(self, x: jax.Array) -> jax.Array:
    """Normalises x over its last axis."""
    return self.add_and_norm(x, None)[1]

  def add_and_norm(self, x: jax.Array, update: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """Returns (x + update, the norm of that sum) from one fused op; update None adds nothing."""
    return kernels.add_rms_norm(
      x, update, self.scale[...], eps=self.eps, out_dtype=self.dtype, implementation=self.impl
    )


class MLP(nnx.Module):
  """SwiGLU feed-forward: down(silu(x·gate) ⊙ x·up)."""

  def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
    """Creates gate, up and down projections (no biases)."""
    c, pd = config, config.param_jnp_dtype
    self.dtype = c.compute_jnp_dtype
    self.gate = param(rngs, (c.embed_dim, c.mlp_dim), ("embed", "mlp"), std=c.init_std, dtype=pd)
    self.up = param(rngs, (c.embed_dim, c.mlp_dim), ("embed", "mlp"), std=c.init_std, dtype=pd)
    self.down = param(rngs, (c.mlp_dim, c.embed_dim), ("mlp", "embed"), std=c.init_std, dtype=pd)

  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the MLP to x [B, T, d]; gate and up run as one product over their stacked weights.

    Stacked as [d, f, 2], not concatenated, so an "mlp"-sharded axis stays sharded; the backward
    pass then forms x's gradient in one product instead of two and their sum.  The pair axis is
    last so that each gate value sits next to its up value: the backward elementwise pass writes
    both gradients of a pair from one read of gate, up and the incoming gradient (with the pair
    axis first, the halves were read once per output half: 7 passes' worth of traffic, not 5).
    """
    gate_up = jnp.stack([self.gate[...], self.up[...]], axis=-1).astype(self.dtype)
    both = jnp.einsum("btd,dfk->btfk", x, gate_up)
    hidden = jax.nn.silu(both[..., 0]) * both[..., 1]
    hidden = sharding.constrain(hidden, ("batch", "length", "mlp"))
    return jnp.einsum("btf,fd->btd", hidden, self.down[...].astype(self.dtype))
