"""Grouped-query attention with rotary or logit-bias positional encodings, and its kernels.

Kernels (``TransformerConfig.attention_impl``):

* ``"xla"`` — ``jax.nn.dot_product_attention(implementation="xla")``; takes any bias and mask.
* ``"cudnn"`` — ``jax.nn.dot_product_attention(implementation="cudnn")`` (GPU only).  ``"auto"``
  picks it on GPU when the compute dtype is bfloat16/float16, head_dim ≤ 128 and a multiple of 8,
  the encoder adds no logit bias (ALiBi, KERPLE) and no ``segment_ids`` are given.  Jax's public
  cuDNN entry point has no packed-segment argument (its ``q_offsets`` live in a private module),
  so when ``"cudnn"`` is *requested explicitly* a segment mask or bias is handed to it as
  ``mask``/``bias``, which jax folds into a dense cuDNN bias (slower; training needs even lengths).
  Checked on an H100 with jax 0.11.2: auto → cuDNN for HoPE in bf16, and explicit cuDNN with a
  segment mask or an ALiBi/KERPLE bias, all match the XLA kernel (KERPLE's gradients included).
* ``"splash"`` — the Pallas TPU splash-attention kernel, rotary family only (no bias), sequence
  length a multiple of 128; GQA through its MQA form (one kernel call per kv head).  On TPU it runs
  compiled; on other backends it runs in Pallas interpret mode, which is how the CPU tests check it
  (numerics only — its TPU performance is untested here).  Under a mesh it is wrapped in
  ``jax.shard_map`` over the batch and head axes.

Incremental decoding (:meth:`Attention.extend`) always uses the XLA kernel with an explicit mask.

KERPLE (log variant): per-head ``kerple_p`` and ``kerple_a`` are ``nnx.Param``s, initialised
U(0.01, 2) and U(0.01, 1) as in the reference code, and clamped to ≥ ``KERPLE_MIN`` = 0.01
where they are used (so the bias −p·log(1 + a·|i − j|) stays a conditionally positive definite
kernel); below the clamp their gradient is zero, as with the reference's in-place clamp.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import nnx

from hope_jax.positional import biases
from hope_jax.positional import encoders
from hope_jax.kernels import rotary_projection
from hope_jax.model.config import TransformerConfig
from hope_jax.model.layers import param
from hope_jax.parallel import sharding

KERPLE_MIN = 1e-2  # KERPLE's p and a are clamped to ≥ this in the forward pass.
SPLASH_BLOCK = 128  # splash kernels tile the sequence in multiples of this.
# Bias encoders (ALiBi, KERPLE) on the XLA path attend in query blocks of this many tokens once a
# sequence is longer, so the [B, heads, T, T] bias never exists whole (long-context evaluation).
BIAS_QUERY_BLOCK = 2048
CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


def resolve_implementation(requested: str, *, dtype: Any, head_dim: int, has_bias: bool,
                           has_segments: bool, backend: str | None = None) -> str:
  """Returns the kernel to use: ``requested`` itself unless it is "auto" (see module docstring)."""
  if requested != "auto":
    return requested
  backend = backend or jax.default_backend()
  cudnn_ok = (backend in ("gpu", "cuda") and jnp.dtype(dtype) in map(jnp.dtype, CUDNN_DTYPES)
              and head_dim <= 128 and head_dim % 8 == 0 and not has_bias and not has_segments)
  return "cudnn" if cudnn_ok else "xla"


def segment_mask(q_segments: jax.Array, k_segments: jax.Array) -> jax.Array:
  """Returns the boolean [B, 1, q, k] mask that keeps query/key pairs of the same segment."""
  return (q_segments[:, :, None] == k_segments[:, None, :])[:, None]


def _dpa(q, k, v, *, bias, segment_ids, scale, implementation):
  """Causal jax.nn.dot_product_attention with an optional segment mask."""
  mask = None if segment_ids is None else segment_mask(segment_ids, segment_ids)
  if implementation == "cudnn" and bias is not None:
    bias = bias.astype(q.dtype)  # cuDNN takes the bias in the compute dtype.
  return jax.nn.dot_product_attention(q, k, v, bias, mask, scale=scale, is_causal=True,
                                      implementation=implementation)


def _splash_block_sizes(length: int):
  """Returns splash BlockSizes: the largest of 512/256/128 dividing the sequence length."""
  from jax.experimental.pallas.ops.tpu import splash_attention as sa
  block = next(b for b in (512, 256, SPLASH_BLOCK) if length % b == 0)
  return sa.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                       block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block,
                       block_kv_dq=block)


def _splash_local(q, k, v, segment_ids, *, scale: float):
  """Splash attention on local (unsharded) arrays q [B,T,N,D], k/v [B,T,K,D]."""
  from jax.experimental.pallas.ops.tpu import splash_attention as sa
  batch, length, heads, head_dim = q.shape
  kv_heads = k.shape[2]
  group = heads // kv_heads
  mask = sa.MultiHeadMask([sa.CausalMask((length, length))] * group)
  kernel = sa.make_splash_mqa_single_device(
      mask=mask, block_sizes=_splash_block_sizes(length),
      interpret=jax.default_backend() != "tpu")
  qg = (q * jnp.asarray(scale, q.dtype)).reshape(batch, length, kv_heads, group, head_dim)
  qg = qg.transpose(0, 2, 3, 1, 4)  # [B, K, G, T, D]
  kt, vt = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, K, T, D]
  if segment_ids is None:
    segment_ids = jnp.zeros((batch, length), jnp.int32)

  def one(qb, kb, vb, seg):
    ids = sa.SegmentIds(q=seg, kv=seg)
    return jax.vmap(lambda qh, kh, vh: kernel(qh, kh, vh, segment_ids=ids))(qb, kb, vb)

  out = jax.vmap(one)(qg, kt, vt, segment_ids)  # [B, K, G, T, D]
  return out.transpose(0, 3, 1, 2, 4).reshape(batch, length, heads, head_dim)


def _splash(q, k, v, *, bias, segment_ids, scale, implementation):
  """Splash attention, shard_mapped over batch and heads when a mesh and logical rules are set."""
  del implementation
  if bias is not None:
    raise ValueError("attention_impl='splash' cannot take a logit bias (ALiBi/KERPLE)")
  if q.shape[1] % SPLASH_BLOCK:
    raise ValueError(f"attention_impl='splash' needs a sequence length that is a multiple of "
                     f"{SPLASH_BLOCK}, got length={q.shape[1]}")
  q_axes = ("batch", "length", "heads", "head_dim")
  kv_axes = ("batch", "length", "kv_heads", "head_dim")
  if segment_ids is None:
    segment_ids = jnp.zeros(q.shape[:2], jnp.int32)
  fn = sharding.map_shards(functools.partial(_splash_local, scale=scale),
                           in_axes=(q_axes, kv_axes, kv_axes, ("batch", "length")),
                           out_axes=q_axes)
  return fn(q, k, v, segment_ids)


KERNELS: dict[str, Callable[..., jax.Array]] = {
    "xla": functools.partial(_dpa, implementation="xla"),
    "cudnn": functools.partial(_dpa, implementation="cudnn"),
    "splash": functools.partial(_splash, implementation="splash"),
}


def reference_attention(q, k, v, *, bias, mask, scale) -> tuple[jax.Array, jax.Array]:
  """Returns (output [B,T,N,D], probabilities [B,N,T,S] float32) with an explicit boolean mask."""
  group = q.shape[2] // k.shape[2]
  k, v = jnp.repeat(k, group, axis=2), jnp.repeat(v, group, axis=2)
  logits = jnp.einsum("btnd,bsnd->bnts", q, k, preferred_element_type=jnp.float32) * scale
  if bias is not None:
    logits = logits + bias
  logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(logits, axis=-1)
  out = jnp.einsum("bnts,bsnd->btnd", probs.astype(v.dtype), v)
  return out, probs


def causal_mask(length: int) -> jax.Array:
  """Returns the boolean lower-triangular [1, 1, T, T] mask."""
  return jnp.tril(jnp.ones((length, length), bool))[None, None]


def logn_factor(positions: jax.Array, train_length: int) -> jax.Array:
  """Log-length query scale max(1, log(n+1)/log(L)) for query position n (1 within the training length)."""
  n = positions.astype(jnp.float32) + 1.0
  return jnp.maximum(1.0, jnp.log(n) / math.log(train_length))


class Attention(nnx.Module):
  """Grouped-query self-attention; the encoder rotates q and k or adds a logit bias."""

  def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
    """Creates q/k/v/o projections (no biases) and, for KERPLE, per-head p and a."""
    self.config = config
    c, pd = config, config.param_jnp_dtype
    self.q_proj = param(rngs, (c.embed_dim, c.num_heads, c.head_dim),
                        ("embed", "heads", "head_dim"), std=c.init_std, dtype=pd)
    self.k_proj = param(rngs, (c.embed_dim, c.num_kv_heads, c.head_dim),
                        ("embed", "kv_heads", "head_dim"), std=c.init_std, dtype=pd)
    self.v_proj = param(rngs, (c.embed_dim, c.num_kv_heads, c.head_dim),
                        ("embed", "kv_heads", "head_dim"), std=c.init_std, dtype=pd)
    self.o_proj = param(rngs, (c.num_heads, c.head_dim, c.embed_dim),
                        ("heads", "head_dim", "embed"), std=c.init_std, dtype=pd)
    if c.encoding.bias == "kerple":
      # Reference init (Chi et al. 2022): p ~ U(0, 2), a ~ U(0, 1); clamped ≥ KERPLE_MIN in use.
      self.kerple_p = nnx.Param(jax.random.uniform(rngs.params(), (c.num_heads,), pd, KERPLE_MIN,
                                                   2.0), out_sharding=("heads",),
                                eager_sharding=False)
      self.kerple_a = nnx.Param(jax.random.uniform(rngs.params(), (c.num_heads,), pd, KERPLE_MIN,
                                                   1.0), out_sharding=("heads",),
                                eager_sharding=False)

  def _weight(self, param: nnx.Param) -> jax.Array:
    """A q/k/v projection weight [d, heads, head_dim] in the compute dtype."""
    return param[...].astype(self.config.compute_jnp_dtype)

  def _product(self, x: jax.Array, param: nnx.Param) -> jax.Array:
    """Returns x [B,T,d] projected by a q/k/v weight: [B,T,heads,head_dim], unrotated."""
    return jnp.einsum("btd,dnh->btnh", x, self._weight(param))

  def _project(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns pre-rotation q [B,T,N,D], k and v [B,T,K,D] in the compute dtype."""
    q = sharding.constrain(self._product(x, self.q_proj), ("batch", "length", "heads", "head_dim"))
    return q, self._product(x, self.k_proj), self._product(x, self.v_proj)

  def _project_rotated(self, x: jax.Array,
                       positions: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns rotated q and k and v; per config.projection_impl, the kernel rotates in the product."""
    c, encoding = self.config, self.config.encoding
    impl = rotary_projection.resolve_implementation(
        c.projection_impl, dtype=c.compute_jnp_dtype, layout=encoding.layout,
        rotates=encoding.rotates)
    batch, length = x.shape[:2]
    tiles = {axis: rotary_projection.plan(impl, batch=batch, length=length, embed=c.embed_dim,
                                          heads=heads, head_dim=c.head_dim, heads_axis=axis,
                                          requested=c.projection_impl)
             for axis, heads in (("heads", c.num_heads), ("kv_heads", c.num_kv_heads))}
    if tiles["heads"] is None and tiles["kv_heads"] is None:
      q, k, v = self._project(x)
      return encoding.rotate(q, positions), encoding.rotate(k, positions), v
    cos, sin, rotating = encoders.rotation_cos_sin(jnp.broadcast_to(positions, (batch, length)),
                                                   encoding.frequencies)
    if tiles["heads"] is not None and tiles["kv_heads"] is not None:
      q, k, v = rotary_projection.project_qkv(
          x, self._weight(self.q_proj), self._weight(self.k_proj), self._weight(self.v_proj),
          cos, sin, rotating=rotating, tiles_q=tiles["heads"], tiles_k=tiles["kv_heads"])
      return sharding.constrain(q, ("batch", "length", "heads", "head_dim")), k, v

    def one(param: nnx.Param, axis: str) -> jax.Array:
      if tiles[axis] is None:
        return encoding.rotate(self._product(x, param), positions)
      return rotary_projection.project(x, self._weight(param), cos, sin, rotating=rotating,
                                       tiles=tiles[axis], heads_axis=axis)

    q = sharding.constrain(one(self.q_proj, "heads"), ("batch", "length", "heads", "head_dim"))
    return q, one(self.k_proj, "kv_heads"), self._product(x, self.v_proj)

  def _bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array | None:
    """Returns the float32 logit bias [B, N, q, k] of ALiBi/KERPLE, or None."""
    encoding = self.config.encoding
    if encoding.bias == "alibi":
      return biases.alibi_bias(q_positions, k_positions, encoding.alibi_slopes)
    if encoding.bias == "kerple":
      p = jnp.maximum(self.kerple_p[...].astype(jnp.float32), KERPLE_MIN)
      a = jnp.maximum(self.kerple_a[...].astype(jnp.float32), KERPLE_MIN)
      return biases.kerple_log_bias(q_positions, k_positions, p=p, a=a)
    return None

  @property
  def scale(self) -> float:
    """The logit scale: encoding.logit_scale / √head_dim."""
    return self.config.encoding.logit_scale / math.sqrt(self.config.head_dim)

  def _blocked_bias_attention(self, q: jax.Array, k: jax.Array, v: jax.Array,
                              positions: jax.Array) -> jax.Array:
    """Causal attention with the encoder's bias, one block of BIAS_QUERY_BLOCK queries at a time."""
    batch, length = q.shape[:2]
    blocks = length // BIAS_QUERY_BLOCK
    q_blocks = q.reshape(batch, blocks, BIAS_QUERY_BLOCK, *q.shape[2:]).swapaxes(0, 1)
    p_blocks = positions.reshape(batch, blocks, BIAS_QUERY_BLOCK).swapaxes(0, 1)
    starts = jnp.arange(blocks, dtype=jnp.int32) * BIAS_QUERY_BLOCK
    columns = jnp.arange(length, dtype=jnp.int32)

    def one(args):
      q_block, p_block, start = args
      rows = start + jnp.arange(BIAS_QUERY_BLOCK, dtype=jnp.int32)
      mask = (rows[:, None] >= columns[None, :])[None, None]
      bias = self._bias(p_block, positions)
      return jax.nn.dot_product_attention(q_block, k, v, bias, mask, scale=self.scale,
                                          implementation="xla")

    out = jax.lax.map(one, (q_blocks, p_blocks, starts))
    return out.swapaxes(0, 1).reshape(q.shape[:2] + out.shape[3:])

  def _logn(self, q: jax.Array, positions: jax.Array) -> jax.Array:
    """Scales queries by logn_factor when config.logn_scaling is on (a no-op within L)."""
    if not self.config.logn_scaling:
      return q
    factor = logn_factor(positions, self.config.train_length)[..., None, None]
    return (q.astype(jnp.float32) * factor).astype(q.dtype)

  def _output(self, out: jax.Array) -> jax.Array:
    """Projects the attention output [B,T,N,D] back to the residual stream."""
    dtype = self.config.compute_jnp_dtype
    return jnp.einsum("btnh,nhd->btd", out, self.o_proj[...].astype(dtype))

  def __call__(self, x: jax.Array, positions: jax.Array, segment_ids: jax.Array | None, *,
               return_attention: bool = False,
               return_qk: bool = False) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Returns (output [B,T,d], extras) over a full causal sequence; extras per the flags."""
    c, encoding = self.config, self.config.encoding
    extras: dict[str, jax.Array] = {}
    if return_qk:
      q, k, v = self._project(x)
      group = c.num_heads // c.num_kv_heads
      extras["q"] = q.astype(jnp.float32)
      extras["k"] = jnp.repeat(k, group, axis=2).astype(jnp.float32)
      q, k = encoding.rotate(q, positions), encoding.rotate(k, positions)
    else:
      q, k, v = self._project_rotated(x, positions)
    q = self._logn(q, positions)
    length = x.shape[1]
    if (encoding.bias is not None and not return_attention and segment_ids is None
        and length > BIAS_QUERY_BLOCK and length % BIAS_QUERY_BLOCK == 0
        and resolve_implementation(c.attention_impl, dtype=q.dtype, head_dim=c.head_dim,
                                   has_bias=True, has_segments=False) == "xla"):
      return self._output(self._blocked_bias_attention(q, k, v, positions)), extras
    bias = self._bias(positions, positions)
    if return_attention:
      mask = causal_mask(x.shape[1])
      if segment_ids is not None:
        mask = mask & segment_mask(segment_ids, segment_ids)
      out, extras["attention"] = reference_attention(q, k, v, bias=bias, mask=mask,
                                                     scale=self.scale)
    else:
      impl = resolve_implementation(c.attention_impl, dtype=q.dtype, head_dim=c.head_dim,
                                    has_bias=bias is not None,
                                    has_segments=segment_ids is not None)
      out = KERNELS[impl](q, k, v, bias=bias, segment_ids=segment_ids, scale=self.scale)
    return self._output(out), extras

  def extend(self, x: jax.Array, positions: jax.Array, *, keys: jax.Array, values: jax.Array,
             key_positions: jax.Array, start: jax.Array,
             mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Attends new tokens x [B,T,d] to a cache; returns (output, keys, values) with them written.

    keys/values: [B, S, K, D] rotated cache; key_positions [B, S] already include the new tokens;
    start: the slot of the first new token; mask: boolean [T, S] of allowed (query, slot) pairs.
    """
    q, k, v = self._project(x)
    encoding = self.config.encoding
    q, k = encoding.rotate(q, positions), encoding.rotate(k, positions)
    q = self._logn(q, positions)
    zero = jnp.zeros((), jnp.int32)
    keys = jax.lax.dynamic_update_slice(keys, k.astype(keys.dtype), (zero, start, zero, zero))
    values = jax.lax.dynamic_update_slice(values, v.astype(values.dtype),
                                          (zero, start, zero, zero))
    bias = self._bias(positions, key_positions)
    out = jax.nn.dot_product_attention(q, keys.astype(q.dtype), values.astype(q.dtype), bias,
                                       mask[None, None], scale=self.scale, implementation="xla")
    return self._output(out), keys, values

  def kernel_inputs(self, x: jax.Array,
                    positions: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns what a causal kernel takes for x [B,T,d]: rotated (log-n scaled) q, rotated k, v."""
    q, k, v = self._project_rotated(x, positions)
    return self._logn(q, positions), k, v

  def logit_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array | None:
    """Returns the encoder's float32 logit bias [B, N, q, k] (ALiBi, KERPLE), or None."""
    return self._bias(q_positions, k_positions)

  def project_output(self, out: jax.Array) -> jax.Array:
    """Projects a kernel's output [B,T,N,D] back to the residual stream [B,T,d]."""
    return self._output(out)
