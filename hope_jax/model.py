"""A Llama-style decoder-only language model in Flax NNX with a configurable positional encoder.

Blocks are pre-norm: ``x + attn(rms(x))`` then ``x + swiglu(rms(x))``; no biases anywhere;
parameters are stored in ``param_dtype`` (float32) and computed in ``dtype`` (bfloat16 by
default); logits are float32 unless ``logits_dtype="bfloat16"``.  The encoder is built by
:func:`hope_jax.registry.build_encoding` from the config's ``encoder``/``encoder_params`` and
``train_length`` (never from the input length), optionally context-extended by
``scaling``/``scaling_factor``.  Every parameter carries logical axis names (see
:mod:`hope_jax.sharding`).  Incremental decoding lives in :mod:`hope_jax.kv_cache`; the methods
here (``init_cache``, ``prefill``, ``decode_step``) wrap it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hope_jax import (fused_loss, fused_norm, kv_cache, mappings, registry, rotary_projection,
                      sharding)
from hope_jax.attention import Attention, param

DTYPES: dict[str, Any] = {"bfloat16": jnp.bfloat16, "float32": jnp.float32,
                          "float16": jnp.float16}
REMAT_POLICIES: dict[str, Any] = {
    "none": None,
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
ATTENTION_IMPLS: tuple[str, ...] = ("auto", "cudnn", "xla", "splash")
LOGITS_DTYPES: tuple[str, ...] = ("float32", "bfloat16")
_POSITIVE_INTS = ("vocab_size", "num_layers", "embed_dim", "num_heads", "num_kv_heads",
                  "head_dim", "mlp_dim", "train_length")


def _require(ok: bool, field: str, value: Any, requirement: str) -> None:
  """Raises ValueError naming the field and value unless ok."""
  if not ok:
    raise ValueError(f"{field} must be {requirement}, got {field}={value!r}")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Hyper-parameters of :class:`Transformer`; validated on construction, hashable."""
  vocab_size: int
  num_layers: int
  embed_dim: int
  num_heads: int
  num_kv_heads: int | None = None  # default: num_heads (multi-head attention)
  head_dim: int | None = None  # default: embed_dim // num_heads
  mlp_dim: int | None = None  # default: 4 * embed_dim
  tie_embeddings: bool = False
  dtype: str = "bfloat16"
  param_dtype: str = "float32"
  remat: bool | str = False  # False/"none", True/"full", "dots", "dots_no_batch"
  train_length: int = 2048
  encoder: str = "rope"
  encoder_params: Any = ()  # dict or tuple of (name, value) items
  scaling: str = "none"
  scaling_factor: float = 1.0
  attention_impl: str = "auto"
  norm_impl: str = "auto"  # "auto" | "xla" | "pallas": see hope_jax.fused_norm
  logits_dtype: str = "float32"  # "float32" | "bfloat16": see Transformer.logits
  loss_impl: str = "auto"  # "auto" | "xla" | "pallas": the token loss, see hope_jax.fused_loss
  projection_impl: str = "auto"  # "auto" | "xla" | "pallas": q/k rotation, hope_jax.rotary_projection
  logn_scaling: bool = False  # scale queries by max(1, log(n+1)/log(train_length)) beyond L
  norm_eps: float = 1e-5
  init_std: float = 0.02

  def __post_init__(self):
    """Fills defaults, normalises remat/encoder_params, validates every field."""
    put = functools.partial(object.__setattr__, self)
    if self.num_kv_heads is None:
      put("num_kv_heads", self.num_heads)
    if self.head_dim is None and isinstance(self.num_heads, int) and self.num_heads > 0:
      put("head_dim", self.embed_dim // self.num_heads)
    if self.mlp_dim is None and isinstance(self.embed_dim, int):
      put("mlp_dim", 4 * self.embed_dim)
    if isinstance(self.remat, bool):
      put("remat", "full" if self.remat else "none")
    params = self.encoder_params
    params = params.items() if isinstance(params, Mapping) else (params or ())
    put("encoder_params", tuple(sorted(
        (str(k), tuple(v) if isinstance(v, list) else v) for k, v in params)))
    for name in _POSITIVE_INTS:
      value = getattr(self, name)
      _require(isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0,
               name, value, "a positive integer")
      put(name, int(value))
    _require(self.num_heads % self.num_kv_heads == 0, "num_kv_heads", self.num_kv_heads,
             f"a divisor of num_heads={self.num_heads}")
    _require(self.head_dim % 2 == 0, "head_dim", self.head_dim, "even")
    _require(self.dtype in DTYPES, "dtype", self.dtype, f"one of {sorted(DTYPES)}")
    _require(self.param_dtype in DTYPES, "param_dtype", self.param_dtype,
             f"one of {sorted(DTYPES)}")
    _require(self.remat in REMAT_POLICIES, "remat", self.remat,
             f"a bool or one of {sorted(REMAT_POLICIES)}")
    _require(self.attention_impl in ATTENTION_IMPLS, "attention_impl", self.attention_impl,
             f"one of {ATTENTION_IMPLS}")
    _require(self.norm_impl in fused_norm.NORM_IMPLS, "norm_impl", self.norm_impl,
             f"one of {fused_norm.NORM_IMPLS}")
    _require(self.loss_impl in fused_loss.LOSS_IMPLS, "loss_impl", self.loss_impl,
             f"one of {fused_loss.LOSS_IMPLS}")
    _require(self.projection_impl in rotary_projection.PROJECTION_IMPLS, "projection_impl",
             self.projection_impl, f"one of {rotary_projection.PROJECTION_IMPLS}")
    _require(self.logits_dtype in LOGITS_DTYPES, "logits_dtype", self.logits_dtype,
             f"one of {LOGITS_DTYPES}")
    _require(isinstance(self.tie_embeddings, bool), "tie_embeddings", self.tie_embeddings, "a bool")
    _require(isinstance(self.logn_scaling, bool), "logn_scaling", self.logn_scaling, "a bool")
    _require(self.norm_eps > 0, "norm_eps", self.norm_eps, "> 0")
    _require(self.init_std > 0, "init_std", self.init_std, "> 0")
    encoding = self.encoding  # raises ValueError naming a bad encoder, parameter or scaling
    _require(not (self.attention_impl == "splash" and encoding.bias), "attention_impl",
             self.attention_impl, f"not 'splash' for the bias encoder {self.encoder!r}")

  @functools.cached_property
  def encoding(self) -> registry.PositionalEncoding:
    """The positional encoding built from encoder, encoder_params, train_length and scaling."""
    encoding = registry.build_encoding(self.encoder, head_dim=self.head_dim,
                                       num_heads=self.num_heads, train_length=self.train_length,
                                       params=dict(self.encoder_params))
    return encoding.with_scaling(self.scaling, factor=self.scaling_factor)

  @property
  def compute_jnp_dtype(self) -> Any:
    """The computation dtype as a jnp dtype."""
    return DTYPES[self.dtype]

  @property
  def param_jnp_dtype(self) -> Any:
    """The parameter dtype as a jnp dtype."""
    return DTYPES[self.param_dtype]

  @classmethod
  def from_mapping(cls, mapping: Any) -> TransformerConfig:
    """Builds a config from a dict or ml_collections ConfigDict; unknown keys raise ValueError."""
    return mappings.dataclass_from_mapping(cls, mapping)


def num_params(config: TransformerConfig, *, non_embedding: bool = False) -> int:
  """Counts parameters; non_embedding drops the input embedding table (kept when tied as head)."""
  c = config
  attn = c.embed_dim * c.head_dim * (2 * c.num_heads + 2 * c.num_kv_heads)
  kerple = 2 * c.num_heads if c.encoding.bias == "kerple" else 0
  block = attn + kerple + 3 * c.embed_dim * c.mlp_dim + 2 * c.embed_dim
  table = c.vocab_size * c.embed_dim
  total = c.num_layers * block + c.embed_dim + table * (1 if c.tie_embeddings else 2)
  return total - table if non_embedding and not c.tie_embeddings else total


def flops_per_token(config: TransformerConfig, seq_len: int) -> int:
  """Training FLOPs per token: 6·N_nonembedding + 6·layers·seq_len·embed_dim (causal)."""
  return (6 * num_params(config, non_embedding=True)
          + 6 * config.num_layers * seq_len * config.embed_dim)


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
    self.scale = param(rngs, (config.embed_dim,), ("embed",), std=0.0,
                       dtype=config.param_jnp_dtype, init="ones")

  def __call__(self, x: jax.Array) -> jax.Array:
    """Normalises x over its last axis."""
    return self.add_and_norm(x, None)[1]

  def add_and_norm(self, x: jax.Array, update: jax.Array | None) -> tuple[jax.Array, jax.Array]:
    """Returns (x + update, the norm of that sum) from one fused op; update None adds nothing."""
    return fused_norm.add_rms_norm(x, update, self.scale[...], eps=self.eps, out_dtype=self.dtype,
                                   implementation=self.impl)


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


class Block(nnx.Module):
  """One pre-norm decoder block: attention then SwiGLU, each with a residual connection."""

  def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
    """Creates the norms, attention and MLP."""
    self.attn_norm = RMSNorm(config, rngs=rngs)
    self.attn = Attention(config, rngs=rngs)
    self.mlp_norm = RMSNorm(config, rngs=rngs)
    self.mlp = MLP(config, rngs=rngs)

  def __call__(self, x: jax.Array, update: jax.Array | None, positions: jax.Array,
               segment_ids: jax.Array | None, *, return_attention: bool = False,
               return_qk: bool = False) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """Returns (x', update', extras) for a full causal sequence.

    The block's input is x + update (update: the previous block's MLP output, or None); its
    output is x' + update', with x' = x + update + attention.  Each residual add is left to the
    next norm, which does it in the same pass (``RMSNorm.add_and_norm``).
    """
    x, normed = self.attn_norm.add_and_norm(x, update)
    h, extras = self.attn(normed, positions, segment_ids, return_attention=return_attention,
                          return_qk=return_qk)
    x, normed = self.mlp_norm.add_and_norm(x, h)
    axes = ("batch", "length", "act_embed")
    return sharding.constrain(x, axes), sharding.constrain(self.mlp(normed), axes), extras

  def extend(self, x: jax.Array, positions: jax.Array, **cache_args) -> tuple[jax.Array, ...]:
    """Like __call__ against a KV cache; returns (x', keys, values)."""
    h, keys, values = self.attn.extend(self.attn_norm(x), positions, **cache_args)
    x = x + h
    return x + self.mlp(self.mlp_norm(x)), keys, values


class Transformer(nnx.Module):
  """Decoder-only LM: embedding, blocks, final RMSNorm and (optionally tied) output head."""

  def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
    """Creates all parameters from config."""
    c, pd = config, config.param_jnp_dtype
    self.config = config
    self.embedding = param(rngs, (c.vocab_size, c.embed_dim), ("vocab", "embed"),
                           std=c.init_std, dtype=pd)
    self.blocks = nnx.List([Block(c, rngs=rngs) for _ in range(c.num_layers)])
    self.final_norm = RMSNorm(c, rngs=rngs)
    if not c.tie_embeddings:
      self.lm_head = param(rngs, (c.embed_dim, c.vocab_size), ("embed", "vocab"),
                           std=c.init_std, dtype=pd)

  def embed(self, tokens: jax.Array) -> jax.Array:
    """Looks up token embeddings [B, T, d] in the compute dtype."""
    # Gather from a table all-gathered over its embed (fsdp) axis, vocab still sharded: an
    # embed-sharded gather would need an all-to-all to reach the batch-sharded residual stream.
    table = sharding.constrain(self.embedding[...], ("vocab", None))
    x = jnp.take(table, tokens, axis=0).astype(self.config.compute_jnp_dtype)
    return sharding.constrain(x, ("batch", "length", "act_embed"))

  def logits(self, x: jax.Array, update: jax.Array | None = None) -> jax.Array:
    """Final norm (of x + update) and output projection; logits [B, T, vocab] in logits_dtype.

    Either way the product accumulates in float32.  ``logits_dtype="float32"`` keeps the logits
    in float32 (the default: evaluation tables compare NLLs closely); ``"bfloat16"`` rounds them
    to bfloat16 as the product's output, as bf16-autocast PyTorch and Megatron do, which halves
    the traffic of the largest tensor of the step; the loss still runs in float32 on them.
    """
    x = self.final_norm.add_and_norm(x, update)[1]
    c = self.config
    dtype = c.compute_jnp_dtype
    spec, head = (("btd,vd->btv", self.embedding) if c.tie_embeddings
                  else ("btd,dv->btv", self.lm_head))
    if c.logits_dtype == "float32":
      out = float32_logits(spec, x, head[...].astype(dtype))
    else:
      out = jnp.einsum(spec, x, head[...].astype(dtype)).astype(DTYPES[c.logits_dtype])
    return sharding.constrain(out, ("batch", "length", "vocab"))

  def __call__(self, tokens: jax.Array, positions: jax.Array | None = None,
               segment_ids: jax.Array | None = None, *, return_attention: bool = False,
               return_qk: bool = False):
    """Returns logits [B, T, vocab] (logits_dtype), or (logits, extras) when a return_* flag is set.

    positions ([B, T] or [T]) default to arange(T); segment_ids [B, T] (packed documents) forbid
    attention across segments.  extras["attention"]: per-layer attention probabilities
    [layers, B, heads, T, T] (computed by the explicit XLA reference path; small inputs only);
    extras["q"], extras["k"]: per-layer *pre-rotation* queries and keys [layers, B, T, heads,
    head_dim] in float32, k repeated over each GQA group (query head h reads kv head
    h // (num_heads // num_kv_heads)).
    """
    x, update, per_layer = self._trunk(tokens, positions, segment_ids,
                                       return_attention=return_attention, return_qk=return_qk)
    logits = self.logits(x, update)
    if not (return_attention or return_qk):
      return logits
    stacked = {k: jnp.stack([e[k] for e in per_layer]) for k in per_layer[0]}
    return logits, stacked

  def _trunk(self, tokens: jax.Array, positions: jax.Array | None,
             segment_ids: jax.Array | None, *, return_attention: bool = False,
             return_qk: bool = False) -> tuple[jax.Array, jax.Array, list[dict[str, jax.Array]]]:
    """Embedding and blocks: returns (x, update, per-layer extras); x + update [B, T, d] is the
    residual stream, the last add left to the final norm."""
    tokens = jnp.asarray(tokens)
    batch, length = tokens.shape
    if positions is None:
      positions = jnp.arange(length, dtype=jnp.int32)
    positions = jnp.broadcast_to(jnp.asarray(positions, jnp.int32), (batch, length))

    def run(block: Block, x: jax.Array, update: jax.Array | None, positions: jax.Array,
            segment_ids: jax.Array | None):
      return block(x, update, positions, segment_ids, return_attention=return_attention,
                   return_qk=return_qk)

    if self.config.remat != "none":
      run = nnx.remat(run, policy=REMAT_POLICIES[self.config.remat])
    x, update = self.embed(tokens), None
    per_layer = []
    for block in self.blocks:
      x, update, extras = run(block, x, update, positions, segment_ids)
      per_layer.append(extras)
    return x, update, per_layer

  def hidden_states(self, tokens: jax.Array, positions: jax.Array | None = None,
                    segment_ids: jax.Array | None = None) -> jax.Array:
    """The residual stream after the last block [B, T, d], before the final norm and head."""
    x, update, _ = self._trunk(tokens, positions, segment_ids)
    return x + update

  def init_cache(self, batch_size: int, max_length: int) -> kv_cache.KVCache:
    """Returns an empty KV cache for batch_size rows of up to max_length tokens."""
    return kv_cache.init_cache(self.config, batch_size, max_length)

  def prefill(self, tokens: jax.Array, cache: kv_cache.KVCache,
              positions: jax.Array | None = None) -> tuple[jax.Array, kv_cache.KVCache]:
    """Runs tokens [B, T] through the model into the cache; returns (logits [B,T,V], cache)."""
    return kv_cache.extend(self, tokens, cache, positions)

  def decode_step(self, token: jax.Array, cache: kv_cache.KVCache,
                  position: jax.Array | None = None) -> tuple[jax.Array, kv_cache.KVCache]:
    """Feeds one token per row ([B]); returns (logits [B, V], cache)."""
    token = jnp.asarray(token).reshape(-1, 1)
    position = None if position is None else jnp.asarray(position).reshape(-1, 1)
    logits, cache = kv_cache.extend(self, token, cache, position)
    return logits[:, 0], cache
