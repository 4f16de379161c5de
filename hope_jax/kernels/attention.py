"""Causal grouped-query attention: cuDNN, XLA or the Pallas TPU splash kernel behind one call.

Implementations (``TransformerConfig.attention_impl``, chosen by :mod:`hope_jax.kernels.selector`):

* ``"xla"`` — ``jax.nn.dot_product_attention(implementation="xla")``; takes any bias and mask.
* ``"cudnn"`` — ``jax.nn.dot_product_attention(implementation="cudnn")`` (GPU only).  ``"auto"``
  picks it on GPU when the compute dtype is bfloat16/float16, head_dim ≤ 128 and a multiple of 8,
  the sequence length is even and no ``segment_ids`` are given.  A logit bias (ALiBi, KERPLE)
  goes to cuDNN as a dense bias in the compute dtype, [1, N, T, T] when every row has the same
  positions (the model's default): the 110m ALiBi train step at 1,024 × 64 took 122.7 ms on cuDNN
  with a [B, N, T, T] bias against 234.6 ms on XLA's attention (H100, session 18,
  ``benchmarks/results/s18/alibi_throughput.jsonl``).  Jax's public cuDNN entry point has no
  packed-segment argument (its ``q_offsets`` live in a private module), so when ``"cudnn"`` is
  *requested explicitly* a segment mask is handed to it as ``mask``, which jax folds into the
  dense bias (slower; training needs even lengths).  Checked on an H100 with jax 0.11.2: auto →
  cuDNN for HoPE in bf16, and explicit cuDNN with a segment mask or an ALiBi/KERPLE bias, all
  match the XLA kernel (KERPLE's gradients included).
* ``"splash"`` — the Pallas TPU splash-attention kernel, rotary family only (no bias), sequence
  length a multiple of 128; GQA through its MQA form (one kernel call per kv head).  On TPU it runs
  compiled; on other backends it runs in Pallas interpret mode, which is how the CPU tests check it
  (numerics only — its TPU performance is untested here).  Under a mesh it is wrapped in
  ``jax.shard_map`` over the batch and head axes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from hope_jax.kernels.selector import SPLASH_BLOCK, select
from hope_jax.parallel import sharding


def segment_mask(q_segments: jax.Array, k_segments: jax.Array) -> jax.Array:
  """Returns the boolean [B, 1, q, k] mask that keeps query/key pairs of the same segment."""
  return (q_segments[:, :, None] == k_segments[:, None, :])[:, None]


def _dpa(q, k, v, *, bias, segment_ids, scale, implementation):
  """Causal jax.nn.dot_product_attention with an optional segment mask."""
  mask = None if segment_ids is None else segment_mask(segment_ids, segment_ids)
  if implementation == "cudnn" and bias is not None:
    bias = bias.astype(q.dtype)  # cuDNN takes the bias in the compute dtype.
  return jax.nn.dot_product_attention(
    q, k, v, bias, mask, scale=scale, is_causal=True, implementation=implementation
  )


def _splash_block_sizes(length: int):
  """Returns splash BlockSizes: the largest of 512/256/128 dividing the sequence length."""
  from jax.experimental.pallas.ops.tpu import splash_attention as sa

  block = next(b for b in (512, 256, SPLASH_BLOCK) if length % b == 0)
  return sa.BlockSizes(
    block_q=block,
    block_kv=block,
    block_kv_compute=block,
    block_q_dkv=block,
    block_kv_dkv=block,
    block_kv_dkv_compute=block,
    block_q_dq=block,
    block_kv_dq=block,
  )


def _splash_local(q, k, v, segment_ids, *, scale: float):
  """Splash attention on local (unsharded) arrays q [B,T,N,D], k/v [B,T,K,D]."""
  from jax.experimental.pallas.ops.tpu import splash_attention as sa

  batch, length, heads, head_dim = q.shape
  kv_heads = k.shape[2]
  group = heads // kv_heads
  mask = sa.MultiHeadMask([sa.CausalMask((length, length))] * group)
  kernel = sa.make_splash_mqa_single_device(
    mask=mask, block_sizes=_splash_block_sizes(length), interpret=jax.default_backend() != "tpu"
  )
  qg = (q * jnp.asarray(scale, q.dtype)).reshape(batch, length, kv_heads, group, head_dim)
  qg = qg.transpose(0, 2, 3, 1, 4)  # [B, K, G, T, D]
  kt, vt = k.transpose(0, 2, 1, 3), v.transpose(0, 2, 1, 3)  # [B, K, T, D]

  def one(qb, kb, vb, seg):
    ids = sa.SegmentIds(q=seg, kv=seg)
    return jax.vmap(lambda qh, kh, vh: kernel(qh, kh, vh, segment_ids=ids))(qb, kb, vb)

  out = jax.vmap(one)(qg, kt, vt, segment_ids)  # [B, K, G, T, D]
  return out.transpose(0, 3, 1, 2, 4).reshape(batch, length, heads, head_dim)


def _splash(q, k, v, *, bias, segment_ids, scale):
  """Splash attention, shard_mapped over batch and heads when a mesh and logical rules are set."""
  del bias  # the selector refused one
  q_axes = ("batch", "length", "heads", "head_dim")
  kv_axes = ("batch", "length", "kv_heads", "head_dim")
  if segment_ids is None:
    segment_ids = jnp.zeros(q.shape[:2], jnp.int32)
  fn = sharding.map_shards(
    functools.partial(_splash_local, scale=scale),
    in_axes=(q_axes, kv_axes, kv_axes, ("batch", "length")),
    out_axes=q_axes,
  )
  return fn(q, k, v, segment_ids)


_KERNELS: dict[str, Callable[..., jax.Array]] = {
  "xla": functools.partial(_dpa, implementation="xla"),
  "cudnn": functools.partial(_dpa, implementation="cudnn"),
  "splash": _splash,
}


def dot_product_attention(
  q: jax.Array,
  k: jax.Array,
  v: jax.Array,
  *,
  scale: float,
  bias: jax.Array | None = None,
  segment_ids: jax.Array | None = None,
  implementation: str = "auto",
) -> jax.Array:
  """Returns causal attention [B,T,N,D] of q [B,T,N,D] over k, v [B,T,K,D] (K divides N).

  bias: float32 logits added [B, N, T, T] (ALiBi, KERPLE) or None; segment_ids [B, T] forbid
  attention across packed documents; implementation: an ``attention_impl`` value.
  """
  impl = select(
    "attention_impl",
    implementation,
    dtype=q.dtype,
    head_dim=q.shape[-1],
    length=q.shape[1],
    has_bias=bias is not None,
    has_segments=segment_ids is not None,
  )
  return _KERNELS[impl](q, k, v, bias=bias, segment_ids=segment_ids, scale=scale)
