"""The q, k and v projections with q's and k's rotation: the entry point, its autodiff, sharding.

``rotary_projection(x, wq, wk, wv, positions, frequencies)`` returns ``(rotate(x @ wq),
rotate(x @ wk), x @ wv)`` [B, T, heads, head_dim] for x [B, T, d] and positions [B, T]; it
computes the rotation's cos/sin from positions and the encoder's frequencies itself.

Why: in XLA the rotation is a pass of its own over q and k — read the projection's output, write
the rotated copy — 1.74 ms per step forward and as much backward at 110M 1024 × 64 on an H100.
The kernel (``rotary_kernel``) rotates in its product's epilogue instead; in the step it takes
0.138 ms where cuBLAS's product alone takes 0.099 ms (its epilogue runs while the tensor cores
wait), so it gains 0.77 ms of the 1.74 (benchmarks/RESULTS.md §2.3).  The backward rotation rides
in one pass over the q, k and v gradients (``_fused_qkv``, RESULTS.md §2.4).

Implementations (``TransformerConfig.projection_impl``, chosen by :mod:`hope_jax.kernels.selector`):

* ``"xla"`` — the three products, then the ``encoders`` rotation of q and k: the reference.
* ``"pallas"`` — ``rotary_kernel.pallas_rotary_matmul`` for q and k (Hopper only; interpret mode
  on the CPU), v by XLA's product.  The backward is XLA's: one pass writes [rotate⁻¹(dq) |
  rotate⁻¹(dk) | dv], then one product each for x's and the weights' gradients.
  Numerics: the float32 accumulator is rotated and rounded once (XLA rounds the product to bf16,
  then rotates).  Unrotated bands (angle 0) are ``a · 1 − b · 0``: the product itself for finite
  values, position-independent as in the XLA path, though not bit-identical to XLA's product
  (another summation order); a non-finite partner would make them NaN, where XLA selects them.
* ``"auto"`` — ``"pallas"`` on a Hopper GPU for a rotating split-half encoder in bf16/fp16 whose
  per-device q and k products both tile (``choose_tiles``), else ``"xla"``.

``rotary_matmul(x, w, cos, sin)`` is the two-dimensional form, one weight, for the benchmarks.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np

from hope_jax.kernels.rotary_kernel import (
  DEFAULT_TILES,
  TileConfig,
  pallas_rotary_matmul,
  tiling_problem,
)
from hope_jax.kernels.selector import select
from hope_jax.parallel import sharding
from hope_jax.positional import encoders

Q_AXES = ("batch", "length", "heads", "head_dim")


def _rotate_heads(
  y: jax.Array, cos: jax.Array, sin: jax.Array, *, head_dim: int, rotating: tuple[bool, ...]
) -> jax.Array:
  """Rotates the split-half pairs of y [M, heads · head_dim] by per-token cos/sin [M, bands]."""
  heads = y.reshape(y.shape[0], -1, head_dim)
  out = encoders._rotate(heads, cos[:, None], sin[:, None], ("split_half", rotating))
  return out.reshape(y.shape)


def xla_rotary_matmul(
  x: jax.Array,
  w: jax.Array,
  cos: jax.Array,
  sin: jax.Array,
  *,
  head_dim: int,
  rotating: tuple[bool, ...],
) -> jax.Array:
  """Returns rotate(x @ w) as XLA computes it: the product, then the rotation's own pass."""
  return _rotate_heads(x @ w.astype(x.dtype), cos, sin, head_dim=head_dim, rotating=rotating)


# Jitted, so that a model's many identical calls lower the kernel once (Mosaic GPU lowers slowly).
_kernel_call = jax.jit(pallas_rotary_matmul, static_argnames=("head_dim", "tiles"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _fused(x, w, cos, sin, head_dim, rotating, tiles):
  """pallas_rotary_matmul with an XLA backward: the cotangent rotated back, then two products."""
  return _kernel_call(x, w, cos, sin, head_dim=head_dim, tiles=tiles)


def _fused_fwd(x, w, cos, sin, head_dim, rotating, tiles):
  """Forward of _fused: keeps x, w and cos/sin (x and w are live for v's backward anyway)."""
  return _kernel_call(x, w, cos, sin, head_dim=head_dim, tiles=tiles), (x, w, cos, sin)


def _fused_bwd(head_dim, rotating, tiles, residuals, cotangent):
  """Backward of _fused: g = rotate⁻¹(cotangent); dx = g wᵀ, dw = xᵀ g; cos/sin get zeros."""
  del tiles
  x, w, cos, sin = residuals
  g = _rotate_heads(cotangent, cos, -sin, head_dim=head_dim, rotating=rotating)
  _, product_vjp = jax.vjp(jnp.matmul, x, w)  # autodiff's own two products, in x's dtype
  dx, dw = product_vjp(g)
  return dx, dw, jnp.zeros_like(cos), jnp.zeros_like(sin)


_fused.defvjp(_fused_fwd, _fused_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(6, 7, 8, 9))
def _fused_qkv(x, wq, wk, wv, cos, sin, head_dim, rotating, tiles_q, tiles_k):
  """(rotate(x @ wq), rotate(x @ wk), x @ wv) from the kernel, with one backward for all three."""
  return (
    _kernel_call(x, wq, cos, sin, head_dim=head_dim, tiles=tiles_q),
    _kernel_call(x, wk, cos, sin, head_dim=head_dim, tiles=tiles_k),
    x @ wv,
  )


def _fused_qkv_fwd(x, wq, wk, wv, cos, sin, head_dim, rotating, tiles_q, tiles_k):
  """Forward of _fused_qkv: keeps the inputs (x and the weights are live in the backward anyway)."""
  out = _fused_qkv(x, wq, wk, wv, cos, sin, head_dim, rotating, tiles_q, tiles_k)
  return out, (x, wq, wk, wv, cos, sin)


def _unrotated_cotangent(
  dq, dk, dv, cos, sin, *, head_dim: int, rotating: tuple[bool, ...]
) -> jax.Array:
  """Returns [rotate⁻¹(dq) | rotate⁻¹(dk) | dv] [M, Nq + 2 · Nk], written by one fusion.

  Each head is viewed as [2, half]: its inverse rotation is x · cos + flip(x) · (±sin), flip
  exchanging the halves (a reverse, no concatenation), so the one concatenation, of q's, k's and
  v's heads, is the fusion's root with elementwise operands (a concatenation feeding elementwise
  math made XLA write it first and read it again: RESULTS.md §2.4).  HoPE's unrotating bands are
  selected back unchanged; float32 math, as encoders'.
  """
  m, half = dq.shape[0], head_dim // 2
  cos4 = cos[:, None, None, :].astype(jnp.float32)  # [M, 1, 1, half]
  sin4 = sin[:, None, None, :].astype(jnp.float32) * np.array([1.0, -1.0], np.float32)[:, None]
  keep = np.asarray(rotating)

  def unrotate(g):
    g4 = g.reshape(m, -1, 2, half)
    turned = g4.astype(jnp.float32) * cos4 + jnp.flip(g4, axis=2).astype(jnp.float32) * sin4
    return jnp.where(keep, turned.astype(g.dtype), g4)

  parts = (unrotate(dq), unrotate(dk), dv.reshape(m, -1, 2, half))
  return jnp.concatenate(parts, axis=1).reshape(m, -1)


def _fused_qkv_bwd(head_dim, rotating, tiles_q, tiles_k, residuals, cotangents):
  """Backward of _fused_qkv: g = [rotate⁻¹(dq) | rotate⁻¹(dk) | dv] in one pass; dx = g wᵀ and
  dw = xᵀ g as one product each over w = [wq | wk | wv] (no sum of three dx); cos/sin get zeros."""
  del tiles_q, tiles_k
  x, wq, wk, wv, cos, sin = residuals
  g = _unrotated_cotangent(*cotangents, cos, sin, head_dim=head_dim, rotating=rotating)
  _, product_vjp = jax.vjp(jnp.matmul, x, jnp.concatenate([wq, wk, wv], axis=1))
  dx, dw = product_vjp(g)
  dwq, dwk, dwv = jnp.split(dw, [wq.shape[1], wq.shape[1] + wk.shape[1]], axis=1)
  return dx, dwq, dwk, dwv, jnp.zeros_like(cos), jnp.zeros_like(sin)


_fused_qkv.defvjp(_fused_qkv_fwd, _fused_qkv_bwd)


def rotary_matmul(
  x: jax.Array,
  w: jax.Array,
  cos: jax.Array,
  sin: jax.Array,
  *,
  head_dim: int,
  rotating: Sequence[bool],
  impl: str = "xla",
  tiles: TileConfig = DEFAULT_TILES,
) -> jax.Array:
  """Returns rotate(x @ w) [M, N]: split-half pairs, bands with rotating[i] False left unrotated.

  x [M, d] and w [d, N] in the compute dtype; cos/sin float32 [M, head_dim // 2]; impl "xla" or
  "pallas" (the kernel whatever the hardware: interpret mode off a GPU).
  """
  rotating = tuple(bool(r) for r in rotating)
  if len(rotating) != head_dim // 2 or cos.shape != (x.shape[0], head_dim // 2):
    raise ValueError(
      f"cos/sin must be [tokens, head_dim // 2] = [{x.shape[0]}, {head_dim // 2}] "
      f"with one rotating flag per band, got cos.shape={cos.shape}, "
      f"{len(rotating)} flags"
    )
  if impl == "xla":
    return xla_rotary_matmul(x, w, cos, sin, head_dim=head_dim, rotating=rotating)
  if impl == "pallas":
    return _fused(x, w.astype(x.dtype), cos, sin, head_dim, rotating, tiles)
  raise ValueError(f"projection_impl must be 'xla' or 'pallas' here, got {impl!r}")


# ----------------------------------------------------------------------------------------------
# The tiling, the sharded kernel call and the entry point the model calls.

_SMALLER_TILES = (
  dataclasses.replace(DEFAULT_TILES, tile_n=64, stages=4),
  dataclasses.replace(DEFAULT_TILES, tile_m=64, tile_n=64, stages=4),
)


def choose_tiles(m: int, d: int, n: int, head_dim: int) -> TileConfig | None:
  """Returns the first tiling (the measured default, then smaller ones) that fits, or None."""
  for tiles in (DEFAULT_TILES, *_SMALLER_TILES):
    if tiling_problem(m, d, n, head_dim, tiles) is None:
      return tiles
  return None


def _out_axes(heads_axis: str) -> tuple[str, ...]:
  """Logical axes of a projection's output [B, T, heads, head_dim]."""
  return ("batch", "length", heads_axis, "head_dim")


def plan(
  *, batch: int, length: int, embed: int, heads: int, head_dim: int, heads_axis: str
) -> tuple[TileConfig | None, str | None]:
  """Returns (the tiling of one projection's per-device product or None, why it cannot tile).

  heads_axis is "heads" (q) or "kv_heads" (k); the product's rows and heads are those of one
  device under the context mesh and rules.
  """
  axes = _out_axes(heads_axis)
  rows = batch * length // (sharding.dimension_shards(axes, 0) * sharding.dimension_shards(axes, 1))
  n = heads // sharding.dimension_shards(axes, 2) * head_dim
  tiles = choose_tiles(rows, embed, n, head_dim)
  return tiles, None if tiles else tiling_problem(rows, embed, n, head_dim, _SMALLER_TILES[-1])


def project_qkv(
  x: jax.Array,
  wq: jax.Array,
  wk: jax.Array,
  wv: jax.Array,
  cos: jax.Array,
  sin: jax.Array,
  *,
  rotating: Sequence[bool],
  tiles_q: TileConfig,
  tiles_k: TileConfig,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Returns rotated q, rotated k and v [B, T, heads, head_dim], per device under a mesh.

  x [B, T, d]; w* [d, heads, head_dim]; cos/sin float32 [B, T, head_dim // 2].  Each device gets
  whole rows of x and its own heads of the weights.  The three share one backward: the inverse
  rotations of dq and dk and the copy of dv are one pass writing [dq' | dk' | dv], which one
  product turns into dx (autodiff of three projections sums three products' dx in a pass of its
  own).
  """
  head_dim, rotating = wq.shape[-1], tuple(bool(r) for r in rotating)

  def local(x, wq, wk, wv, cos, sin):
    b, t, d = x.shape
    flat = lambda a: a.reshape(b * t, -1)
    outs = _fused_qkv(
      flat(x),
      wq.reshape(d, -1),
      wk.reshape(d, -1),
      wv.reshape(d, -1),
      flat(cos),
      flat(sin),
      head_dim,
      rotating,
      tiles_q,
      tiles_k,
    )
    return tuple(out.reshape(b, t, -1, head_dim) for out in outs)

  rows = ("batch", "length", None)
  weight = lambda axis: (None, axis, None)
  fn = sharding.map_shards(
    local,
    in_axes=(rows, weight("heads"), weight("kv_heads"), weight("kv_heads"), rows, rows),
    out_axes=(_out_axes("heads"), _out_axes("kv_heads"), _out_axes("kv_heads")),
  )
  return fn(x, wq, wk, wv, cos, sin)


def _xla_projection(
  x: jax.Array,
  wq: jax.Array,
  wk: jax.Array,
  wv: jax.Array,
  positions: jax.Array,
  frequencies: np.ndarray,
  layout: str,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The three products, then the encoders' rotation of q and k (a no-op when nothing rotates)."""
  product = lambda w: jnp.einsum("btd,dnh->btnh", x, w)  # noqa: E731
  q = sharding.constrain(product(wq), Q_AXES)
  k, v = product(wk), product(wv)
  rotate = lambda y: encoders.apply_rotary(  # noqa: E731
    y, positions, frequencies, layout=cast(encoders.Layout, layout)
  )  # checked there
  return rotate(q), rotate(k), v


def rotary_projection(
  x: jax.Array,
  wq: jax.Array,
  wk: jax.Array,
  wv: jax.Array,
  positions: jax.Array,
  frequencies,
  *,
  layout: str = "split_half",
  implementation: str = "auto",
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Returns (rotated q [B,T,N,D], rotated k [B,T,K,D], v [B,T,K,D]) of x [B, T, d].

  wq [d, N, D], wk and wv [d, K, D] in x's dtype; positions integer [B, T]; frequencies the
  encoder's concrete [D // 2] (0: a band that does not rotate); layout "split_half" or
  "interleaved"; implementation a ``projection_impl`` value (see the module docstring).
  """
  frequencies = encoders.concrete_frequencies(frequencies)
  batch, length, embed = x.shape
  head_dim = wq.shape[-1]
  plans = [
    plan(
      batch=batch, length=length, embed=embed, heads=w.shape[1], head_dim=head_dim, heads_axis=axis
    )
    for w, axis in ((wq, "heads"), (wk, "kv_heads"))
  ]
  impl = select(
    "projection_impl",
    implementation,
    dtype=x.dtype,
    layout=layout,
    rotates=bool((frequencies > 0).any()),
    tiling_problem=next((problem for _, problem in plans if problem), None),
  )
  if impl == "xla":
    return _xla_projection(x, wq, wk, wv, positions, frequencies, layout)
  cos, sin, rotating = encoders.rotation_cos_sin(
    jnp.broadcast_to(positions, (batch, length)), frequencies
  )
  tiles_q, tiles_k = plans[0][0], plans[1][0]
  assert tiles_q is not None and tiles_k is not None  # "pallas" is chosen only when both tile
  q, k, v = project_qkv(
    x, wq, wk, wv, cos, sin, rotating=rotating, tiles_q=tiles_q, tiles_k=tiles_k
  )
  return sharding.constrain(q, Q_AXES), k, v
