"""Grouped-query attention with rotary or logit-bias positional encodings.

The kernels live in :mod:`hope_jax.kernels`: the model hands them its weights, positions and
the encoder's frequencies (``rotary_projection``) and its q, k, v and bias
(``dot_product_attention``), each with its config field (``projection_impl``,
``attention_impl``).  :meth:`Attention.analyze` is the analysis path (attention probabilities and
pre-rotation q, k from an explicit reference computation), apart from the training forward.

Incremental decoding (:meth:`Attention.extend`) always uses the XLA kernel with an explicit mask.

KERPLE (log variant): per-head ``kerple_p`` and ``kerple_a`` are ``nnx.Param``s, initialised
U(0.01, 2) and U(0.01, 1) as in the reference code, and clamped to ≥ ``KERPLE_MIN`` = 0.01
where they are used (so the bias −p·log(1 + a·|i − j|) stays a conditionally positive definite
kernel); below the clamp their gradient is zero, as with the reference's in-place clamp.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from hope_jax import kernels
from hope_jax.kernels.attention import segment_mask
from hope_jax.model.config import TransformerConfig
from hope_jax.model.layers import param
from hope_jax.positional import biases

KERPLE_MIN = 1e-2  # KERPLE's p and a are clamped to ≥ this in the forward pass.
# Bias encoders (ALiBi, KERPLE) on the XLA path attend in query blocks of this many tokens once a
# sequence is longer, so the [B, heads, T, T] bias never exists whole (long-context evaluation).
BIAS_QUERY_BLOCK = 2048


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
    self.q_proj = param(
      rngs,
      (c.embed_dim, c.num_heads, c.head_dim),
      ("embed", "heads", "head_dim"),
      std=c.init_std,
      dtype=pd,
    )
    self.k_proj = param(
      rngs,
      (c.embed_dim, c.num_kv_heads, c.head_dim),
      ("embed", "kv_heads", "head_dim"),
      std=c.init_std,
      dtype=pd,
    )
    self.v_proj = param(
      rngs,
      (c.embed_dim, c.num_kv_heads, c.head_dim),
      ("embed", "kv_heads", "head_dim"),
      std=c.init_std,
      dtype=pd,
    )
    self.o_proj = param(
      rngs,
      (c.num_heads, c.head_dim, c.embed_dim),
      ("heads", "head_dim", "embed"),
      std=c.init_std,
      dtype=pd,
    )
    if c.encoding.bias == "kerple":
      # Reference init (Chi et al. 2022): p ~ U(0, 2), a ~ U(0, 1); clamped ≥ KERPLE_MIN in use.
      self.kerple_p = nnx.Param(
        jax.random.uniform(rngs.params(), (c.num_heads,), pd, KERPLE_MIN, 2.0),
        out_sharding=("heads",),
        eager_sharding=False,
      )
      self.kerple_a = nnx.Param(
        jax.random.uniform(rngs.params(), (c.num_heads,), pd, KERPLE_MIN, 1.0),
        out_sharding=("heads",),
        eager_sharding=False,
      )

  def _weight(self, param: nnx.Param) -> jax.Array:
    """A q/k/v projection weight [d, heads, head_dim] in the compute dtype."""
    return param[...].astype(self.config.compute_jnp_dtype)

  def _project(
    self, x: jax.Array, positions: jax.Array, *, implementation: str
  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns rotated q [B,T,N,D], k and v [B,T,K,D] in the compute dtype."""
    encoding = self.config.encoding
    return kernels.rotary_projection(
      x,
      self._weight(self.q_proj),
      self._weight(self.k_proj),
      self._weight(self.v_proj),
      positions,
      encoding.frequencies,
      layout=encoding.layout,
      implementation=implementation,
    )

  def _bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array | None:
    """Returns the float32 logit bias [B, N, q, k] of ALiBi/KERPLE, or None."""
    encoding = self.config.encoding
    if encoding.bias == "alibi":
      if encoding.alibi_slopes is None:
        raise ValueError(f"encoding {encoding.name!r} has bias='alibi' but no alibi_slopes")
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

  def _blocked_bias_attention(
    self, q: jax.Array, k: jax.Array, v: jax.Array, positions: jax.Array
  ) -> jax.Array:
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
      return jax.nn.dot_product_attention(
        q_block, k, v, bias, mask, scale=self.scale, implementation="xla"
      )

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

  def __call__(
    self, x: jax.Array, positions: jax.Array, segment_ids: jax.Array | None
  ) -> jax.Array:
    """Returns the attention output [B, T, d] over a full causal sequence.

    positions: [B, T], or [1, T] when every row has the same ones; a logit bias is then built
    once for the batch, [1, N, T, T] (and a cuDNN bias's gradient is [1, N, T, T] too).
    """
    c, encoding = self.config, self.config.encoding
    shared_positions = positions
    positions = jnp.broadcast_to(positions, x.shape[:2])
    q, k, v = self._project(x, positions, implementation=c.projection_impl)
    q = self._logn(q, positions)
    length = x.shape[1]
    if (
      encoding.bias is not None
      and segment_ids is None
      and length > BIAS_QUERY_BLOCK
      and length % BIAS_QUERY_BLOCK == 0
      and kernels.select(
        "attention_impl",
        c.attention_impl,
        dtype=q.dtype,
        head_dim=c.head_dim,
        length=length,
        has_bias=True,
        has_segments=False,
      )
      == "xla"
    ):
      return self._output(self._blocked_bias_attention(q, k, v, positions))
    out = kernels.dot_product_attention(
      q,
      k,
      v,
      scale=self.scale,
      bias=self._bias(shared_positions, shared_positions),
      segment_ids=segment_ids,
      implementation=c.attention_impl,
    )
    return self._output(out)

  def analyze(
    self, x: jax.Array, positions: jax.Array, segment_ids: jax.Array | None
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Returns (output [B,T,d], extras) by the explicit reference path, for analysis only.

    extras: "attention", the probabilities [B, heads, T, T] float32; "q" and "k", the
    *pre-rotation* queries and keys [B, T, heads, head_dim] float32, k repeated over each GQA
    group (query head h reads kv head h // (num_heads // num_kv_heads)).
    """
    c, encoding = self.config, self.config.encoding
    product = lambda param: jnp.einsum("btd,dnh->btnh", x, self._weight(param))  # noqa: E731
    q, k, v = product(self.q_proj), product(self.k_proj), product(self.v_proj)
    extras = {
      "q": q.astype(jnp.float32),
      "k": jnp.repeat(k, c.num_heads // c.num_kv_heads, axis=2).astype(jnp.float32),
    }
    q, k = encoding.rotate(q, positions), encoding.rotate(k, positions)
    q = self._logn(q, positions)
    mask = causal_mask(x.shape[1])
    if segment_ids is not None:
      mask = mask & segment_mask(segment_ids, segment_ids)
    out, extras["attention"] = reference_attention(
      q, k, v, bias=self._bias(positions, positions), mask=mask, scale=self.scale
    )
    return self._output(out), extras

  def extend(
    self,
    x: jax.Array,
    positions: jax.Array,
    *,
    keys: jax.Array,
    values: jax.Array,
    key_positions: jax.Array,
    start: jax.Array,
    mask: jax.Array,
  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Attends new tokens x [B,T,d] to a cache; returns (output, keys, values) with them written.

    keys/values: [B, S, K, D] rotated cache; key_positions [B, S] already include the new tokens;
    start: the slot of the first new token; mask: boolean [T, S] of allowed (query, slot) pairs.
    """
    q, k, v = self._project(x, positions, implementation="xla")
    q = self._logn(q, positions)
    zero = jnp.zeros((), jnp.int32)
    keys = jax.lax.dynamic_update_slice(keys, k.astype(keys.dtype), (zero, start, zero, zero))
    values = jax.lax.dynamic_update_slice(values, v.astype(values.dtype), (zero, start, zero, zero))
    bias = self._bias(positions, key_positions)
    out = jax.nn.dot_product_attention(
      q,
      keys.astype(q.dtype),
      values.astype(q.dtype),
      bias,
      mask[None, None],
      scale=self.scale,
      implementation="xla",
    )
    return self._output(out), keys, values

  def kernel_inputs(
    self, x: jax.Array, positions: jax.Array
  ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Returns what a causal kernel takes for x [B,T,d]: rotated (log-n scaled) q, rotated k, v."""
    q, k, v = self._project(x, positions, implementation=self.config.projection_impl)
    return self._logn(q, positions), k, v

  def logit_bias(self, q_positions: jax.Array, k_positions: jax.Array) -> jax.Array | None:
    """Returns the encoder's float32 logit bias [B, N, q, k] (ALiBi, KERPLE), or None."""
    return self._bias(q_positions, k_positions)

  def project_output(self, out: jax.Array) -> jax.Array:
    """Projects a kernel's output [B,T,N,D] back to the residual stream [B,T,d]."""
    return self._output(out)
