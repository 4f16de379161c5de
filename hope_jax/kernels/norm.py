"""RMSNorm fused with the residual add in front of it, as plain XLA or as Pallas GPU kernels.

``add_rms_norm(x, update, scale)`` returns ``(s, n)``: the residual stream ``s = x + update`` in
x's dtype, and ``n = s / rms(s) · scale`` in ``out_dtype``, computed in float32 from the rounded
``s`` (so both implementations see the residual stream the model stores).  ``update=None`` is a
plain RMSNorm of x.

Implementations (``TransformerConfig.norm_impl``):

* ``"xla"`` — jnp; XLA fuses it into two passes forward (sum of squares, then the scaling) and
  two backward (the row reduction, then the gradient), each re-reading its inputs.
* ``"pallas"`` — Pallas kernels on the Triton backend (GPU; interpret mode elsewhere, which is
  how the CPU tests check it): one pass forward that reads x and update and writes s, n and the
  reciprocal rms, and one pass backward that reads n's and s's cotangents and s and writes the
  gradient, with per-block partial sums for the scale's gradient.  Under a mesh each kernel is
  ``shard_map``ped over batch and length (the embedding axis must be unsharded).  JAX 0.11
  deprecated the Triton backend of Pallas; where it is missing, ``"auto"`` falls back to XLA.
* ``"auto"`` — ``"pallas"`` on GPU when the activations' embedding axis is unsharded, else
  ``"xla"`` (:func:`hope_jax.kernels.selector.select`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from hope_jax.kernels import _triton as pallas_gpu
from hope_jax.kernels._triton import block_rows, interpret, padded, pl, plgpu
from hope_jax.kernels.selector import select
from hope_jax.parallel import sharding

# Kernel shapes (benchmarks/norm_cost.py --sweep times alternatives): rows per program, warps.
FORWARD_ROWS, FORWARD_WARPS = 4, 4
BACKWARD_ROWS = 64  # rows per backward program (one partial sum of the scale's gradient each)
BACKWARD_CHUNK = 4  # rows the backward program holds in registers at a time
BACKWARD_WARPS = 4
_ROW_AXES = ("batch", "length")
_ACTIVATION_AXES = (*_ROW_AXES, "act_embed")


def xla_add_rms_norm(
  x: jax.Array, update: jax.Array | None, scale: jax.Array, *, eps: float, out_dtype: Any
) -> tuple[jax.Array, jax.Array]:
  """Returns (x + update, rms_norm(x + update) · scale) with jnp; XLA fuses it."""
  s = x if update is None else x + update.astype(x.dtype)
  sf = s.astype(jnp.float32)
  sf = sf * jax.lax.rsqrt(jnp.mean(sf * sf, axis=-1, keepdims=True) + eps)
  return s, (sf * scale.astype(jnp.float32)).astype(out_dtype)


def _forward_kernel(*refs, eps: float, rows: int, has_update: bool):
  """One block of rows: s = x + update, n = s · rsqrt(mean(s²) + eps) · scale, and the rsqrt."""
  if has_update:
    x_ref, u_ref, scale_ref, s_ref, n_ref, rstd_ref = refs
  else:
    x_ref, scale_ref, n_ref, rstd_ref = refs
  features = x_ref.shape[1]
  r = pl.program_id(0) * rows + jnp.arange(rows)
  c = jnp.arange(padded(features))
  at, mask = (r[:, None], c[None, :]), c[None, :] < features
  s = plgpu.load(x_ref.at[at], mask=mask, other=0.0)
  if has_update:
    s = (
      s.astype(jnp.float32) + plgpu.load(u_ref.at[at], mask=mask, other=0.0).astype(jnp.float32)
    ).astype(s.dtype)
    plgpu.store(s_ref.at[at], s, mask=mask)
  sf = s.astype(jnp.float32)
  rstd = jax.lax.rsqrt(jnp.sum(sf * sf, axis=1) / features + eps)
  scale = plgpu.load(scale_ref.at[c], mask=c < features, other=0.0).astype(jnp.float32)
  plgpu.store(n_ref.at[at], (sf * rstd[:, None] * scale[None, :]).astype(n_ref.dtype), mask=mask)
  plgpu.store(rstd_ref.at[r], rstd)


def _backward_kernel(
  s_ref, rstd_ref, scale_ref, dn_ref, ds_ref, dx_ref, dscale_ref, *, rows: int, chunk: int
):
  """One block of rows: dx = ds + rstd·g − s·rstd³·mean(g·s) (g = dn·scale); partial dscale."""
  features = s_ref.shape[1]
  c = jnp.arange(padded(features))
  cmask = c < features
  scale = plgpu.load(scale_ref.at[c], mask=cmask, other=0.0).astype(jnp.float32)
  first = pl.program_id(0) * rows

  def body(i, dscale):
    r = first + i * chunk + jnp.arange(chunk)
    at, mask = (r[:, None], c[None, :]), cmask[None, :]
    s = plgpu.load(s_ref.at[at], mask=mask, other=0.0).astype(jnp.float32)
    dn = plgpu.load(dn_ref.at[at], mask=mask, other=0.0).astype(jnp.float32)
    ds = plgpu.load(ds_ref.at[at], mask=mask, other=0.0).astype(jnp.float32)
    rstd = plgpu.load(rstd_ref.at[r])[:, None]
    g = dn * scale[None, :]
    mean_gs = jnp.sum(g * s, axis=1, keepdims=True) / features
    dx = ds + rstd * g - s * (rstd * rstd * rstd) * mean_gs
    plgpu.store(dx_ref.at[at], dx.astype(dx_ref.dtype), mask=mask)
    return dscale + jnp.sum(dn * s * rstd, axis=0)

  dscale = jax.lax.fori_loop(0, rows // chunk, body, jnp.zeros(c.shape, jnp.float32))
  plgpu.store(dscale_ref.at[pl.program_id(0), c], dscale, mask=cmask)


def _local_forward(x, update, scale, *, eps: float, out_dtype: Any):
  """Forward kernel on local arrays [..., d]; returns (s or None, n, rstd [rows])."""
  *lead, features = x.shape
  flat = [a.reshape(-1, features) for a in ((x,) if update is None else (x, update))]
  rows = flat[0].shape[0]
  block = block_rows(rows, FORWARD_ROWS)
  out_shape = ([] if update is None else [jax.ShapeDtypeStruct((rows, features), x.dtype)]) + [
    jax.ShapeDtypeStruct((rows, features), out_dtype),
    jax.ShapeDtypeStruct((rows,), jnp.float32),
  ]
  outs = pl.pallas_call(
    functools.partial(_forward_kernel, eps=eps, rows=block, has_update=update is not None),
    grid=(rows // block,),
    out_shape=out_shape,
    interpret=interpret(),
    name="add_rms_norm",
    compiler_params=plgpu.CompilerParams(num_warps=FORWARD_WARPS),
  )(*flat, scale)
  s = None if update is None else outs[0].reshape(x.shape)
  return s, outs[-2].reshape(x.shape), outs[-1].reshape(lead)


def _local_backward(s, rstd, scale, dn, ds):
  """Backward kernel on local arrays; returns (dx [..., d], partial dscale [*lead', d])."""
  *lead, features = s.shape
  rows = rstd.size
  block = block_rows(lead[-1], BACKWARD_ROWS)
  chunk = min(BACKWARD_CHUNK, block)
  dx, partial = pl.pallas_call(
    functools.partial(_backward_kernel, rows=block, chunk=chunk),
    grid=(rows // block,),
    interpret=interpret(),
    name="add_rms_norm_backward",
    out_shape=[
      jax.ShapeDtypeStruct((rows, features), s.dtype),
      jax.ShapeDtypeStruct((rows // block, features), jnp.float32),
    ],
    compiler_params=plgpu.CompilerParams(num_warps=BACKWARD_WARPS),
  )(
    s.reshape(rows, features),
    rstd.reshape(rows),
    scale,
    dn.reshape(rows, features),
    ds.reshape(rows, features),
  )
  # Blocks never straddle the last leading axis, so the partials keep the leading layout.
  return dx.reshape(s.shape), partial.reshape(*lead[:-1], -1, features)


def _row_axes(ndim: int) -> tuple[str | None, ...]:
  """Logical axes of a model activation [batch, length, embed]; other ranks stay unsharded."""
  return _ACTIVATION_AXES if ndim == 3 else (None,) * ndim


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _pallas_add_rms_norm(x, update, scale, eps, out_dtype):
  """Pallas add_rms_norm with its one-pass backward (a custom VJP)."""
  return _pallas_forward(x, update, scale, eps, out_dtype)[0]


def _pallas_forward(x, update, scale, eps, out_dtype):
  """Runs the forward kernel per shard; returns ((s, n), (s, reciprocal rms, scale)) (also the
  custom_vjp forward pass)."""
  axes = _row_axes(x.ndim)
  scale_f32 = scale.astype(jnp.float32)
  if update is None:
    fn = lambda x, scale: _local_forward(x, None, scale, eps=eps, out_dtype=out_dtype)[1:]
    n, rstd = sharding.map_shards(fn, in_axes=(axes, (None,)), out_axes=(axes, axes[:-1]))(
      x, scale_f32
    )
    s = x
  else:
    fn = lambda x, u, scale: _local_forward(x, u, scale, eps=eps, out_dtype=out_dtype)
    s, n, rstd = sharding.map_shards(
      fn, in_axes=(axes, axes, (None,)), out_axes=(axes, axes, axes[:-1])
    )(x, update, scale_f32)
  return (s, n), (s, rstd, scale)


def _pallas_bwd(eps, out_dtype, residuals, cotangents):
  """custom_vjp backward: one kernel pass; x and update share the gradient."""
  del eps, out_dtype
  s, rstd, scale = residuals
  ds, dn = cotangents
  axes = _row_axes(s.ndim)
  dx, partial = sharding.map_shards(
    _local_backward,
    in_axes=(axes, axes[:-1], (None,), axes, axes),
    out_axes=(axes, (*axes[:-1], None)),
  )(s, rstd, scale.astype(jnp.float32), dn, ds)
  dscale = jnp.sum(partial.reshape(-1, s.shape[-1]), axis=0).astype(scale.dtype)
  return dx, dx, dscale


_pallas_add_rms_norm.defvjp(_pallas_forward, _pallas_bwd)


def pallas_add_rms_norm(
  x: jax.Array, update: jax.Array | None, scale: jax.Array, *, eps: float, out_dtype: Any
) -> tuple[jax.Array, jax.Array]:
  """Returns (x + update, rms_norm(x + update) · scale) through the Pallas kernels."""
  pallas_gpu.check_runnable(
    _ACTIVATION_AXES, field="norm_impl", what="the activations' embedding axis"
  )
  if update is None:
    return x, _pallas_plain(x, scale, eps, out_dtype)
  return _pallas_add_rms_norm(x, update.astype(x.dtype), scale, eps, out_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _pallas_plain(x, scale, eps, out_dtype):
  """Pallas rms_norm of x alone (no residual add)."""
  return _pallas_forward(x, None, scale, eps, out_dtype)[0][1]


def _plain_fwd(x, scale, eps, out_dtype):
  """custom_vjp forward of the plain norm."""
  (_, n), residuals = _pallas_forward(x, None, scale, eps, out_dtype)
  return n, residuals


def _plain_bwd(eps, out_dtype, residuals, dn):
  """custom_vjp backward of the plain norm: the fused backward with a zero residual cotangent."""
  dx, _, dscale = _pallas_bwd(eps, out_dtype, residuals, (jnp.zeros_like(residuals[0]), dn))
  return dx, dscale


_pallas_plain.defvjp(_plain_fwd, _plain_bwd)

IMPLEMENTATIONS: dict[str, Callable[..., tuple[jax.Array, jax.Array]]] = {
  "xla": xla_add_rms_norm,
  "pallas": pallas_add_rms_norm,
}


def add_rms_norm(
  x: jax.Array,
  update: jax.Array | None,
  scale: jax.Array,
  *,
  eps: float,
  out_dtype: Any,
  implementation: str = "auto",
) -> tuple[jax.Array, jax.Array]:
  """Returns (s, n): s = x + update (x when update is None), n = rms_norm(s) · scale in out_dtype."""
  impl = select(
    "norm_impl", implementation, feature_sharded=pallas_gpu.feature_shards(_ACTIVATION_AXES) > 1
  )
  return IMPLEMENTATIONS[impl](x, update, scale, eps=eps, out_dtype=out_dtype)
