"""A Llama-style decoder-only language model in Flax NNX with a configurable positional encoder.

Blocks are pre-norm: ``x + attn(rms(x))`` then ``x + swiglu(rms(x))``; no biases anywhere;
parameters are stored in ``param_dtype`` (float32) and computed in ``dtype`` (bfloat16 by
default); logits are float32 unless ``logits_dtype="bfloat16"``.  The encoder is built by
:func:`hope_jax.positional.registry.build_encoding` from the config's ``encoder``/``encoder_params`` and
``train_length`` (never from the input length), optionally context-extended by
``scaling``/``scaling_factor``.  Every parameter carries logical axis names (see
:mod:`hope_jax.parallel.sharding`).  Incremental decoding runs against a
:class:`hope_jax.model.kv_cache.KVCache` (``init_cache``, ``prefill``, ``decode_step``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from hope_jax.model import kv_cache
from hope_jax.model.attention import Attention
from hope_jax.model.config import DTYPES, REMAT_POLICIES, TransformerConfig
from hope_jax.model.layers import MLP, RMSNorm, float32_logits, param
from hope_jax.parallel import sharding


def broadcast_positions(positions: jax.Array | None, shape: tuple[int, ...]) -> jax.Array:
  """Returns int32 positions [B, T] for tokens of this shape [B, T]: arange(T) when None."""
  batch, length = shape
  if positions is None:
    positions = jnp.arange(length, dtype=jnp.int32)
  return jnp.broadcast_to(jnp.asarray(positions, jnp.int32), (batch, length))


def row_positions(positions: jax.Array | None, shape: tuple[int, ...]) -> jax.Array:
  """Returns int32 positions [B, T], or [1, T] when every row has the same (None, [T] or [1, T])."""
  batch, length = shape
  if positions is None or jnp.ndim(positions) == 1 or jnp.shape(positions)[0] == 1:
    return broadcast_positions(positions, (1, length))
  return broadcast_positions(positions, (batch, length))


class Block(nnx.Module):
  """One pre-norm decoder block: attention then SwiGLU, each with a residual connection."""

  def __init__(self, config: TransformerConfig, *, rngs: nnx.Rngs):
    """Creates the norms, attention and MLP."""
    self.attn_norm = RMSNorm(config, rngs=rngs)
    self.attn = Attention(config, rngs=rngs)
    self.mlp_norm = RMSNorm(config, rngs=rngs)
    self.mlp = MLP(config, rngs=rngs)

  def __call__(
    self,
    x: jax.Array,
    update: jax.Array | None,
    positions: jax.Array,
    segment_ids: jax.Array | None,
  ) -> tuple[jax.Array, jax.Array]:
    """Returns (x', update') for a full causal sequence.

    The block's input is x + update (update: the previous block's MLP output, or None); its
    output is x' + update', with x' = x + update + attention.  Each residual add is left to the
    next norm, which does it in the same pass (``RMSNorm.add_and_norm``).
    """
    x, normed = self.attn_norm.add_and_norm(x, update)
    h = self.attn(normed, positions, segment_ids)
    x, normed = self.mlp_norm.add_and_norm(x, h)
    axes = ("batch", "length", "act_embed")
    return sharding.constrain(x, axes), sharding.constrain(self.mlp(normed), axes)

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
    self.embedding = param(
      rngs, (c.vocab_size, c.embed_dim), ("vocab", "embed"), std=c.init_std, dtype=pd
    )
    self.blocks = nnx.List([Block(c, rngs=rngs) for _ in range(c.num_layers)])
    self.final_norm = RMSNorm(c, rngs=rngs)
    if not c.tie_embeddings:
      self.lm_head = param(
        rngs, (c.embed_dim, c.vocab_size), ("embed", "vocab"), std=c.init_std, dtype=pd
      )

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
    spec, head = (
      ("btd,vd->btv", self.embedding) if c.tie_embeddings else ("btd,dv->btv", self.lm_head)
    )
    if c.logits_dtype == "float32":
      out = float32_logits(spec, x, head[...].astype(dtype))
    else:
      out = jnp.einsum(spec, x, head[...].astype(dtype)).astype(DTYPES[c.logits_dtype])
    return sharding.constrain(out, ("batch", "length", "vocab"))

  def __call__(
    self,
    tokens: jax.Array,
    positions: jax.Array | None = None,
    segment_ids: jax.Array | None = None,
  ) -> jax.Array:
    """Returns logits [B, T, vocab] in logits_dtype.

    positions ([B, T] or [T]) default to arange(T); segment_ids [B, T] (packed documents) forbid
    attention across segments.  Attention probabilities and pre-rotation q, k come from
    :func:`hope_jax.model.analysis.analysis_forward`, not from this training forward.
    """
    return self.logits(*self._trunk(tokens, positions, segment_ids))

  def _trunk(
    self, tokens: jax.Array, positions: jax.Array | None, segment_ids: jax.Array | None
  ) -> tuple[jax.Array, jax.Array]:
    """Embedding and blocks: returns (x, update); x + update [B, T, d] is the residual stream,
    the last add left to the final norm."""
    tokens = jnp.asarray(tokens)
    positions = row_positions(positions, tokens.shape)  # [1, T]: a bias is built once per batch

    def run(
      block: Block,
      x: jax.Array,
      update: jax.Array | None,
      positions: jax.Array,
      segment_ids: jax.Array | None,
    ):
      return block(x, update, positions, segment_ids)

    if self.config.remat != "none":
      run = nnx.remat(run, policy=REMAT_POLICIES[str(self.config.remat)])  # a name by now
    x, update = self.embed(tokens), None
    for block in self.blocks:
      x, update = run(block, x, update, positions, segment_ids)
    assert update is not None  # num_layers >= 1
    return x, update

  def hidden_states(
    self,
    tokens: jax.Array,
    positions: jax.Array | None = None,
    segment_ids: jax.Array | None = None,
  ) -> jax.Array:
    """The residual stream after the last block [B, T, d], before the final norm and head."""
    x, update = self._trunk(tokens, positions, segment_ids)
    return x + update

  def init_cache(self, batch_size: int, max_length: int) -> kv_cache.KVCache:
    """Returns an empty KV cache for batch_size rows of up to max_length tokens."""
    return kv_cache.init_cache(self.config, batch_size, max_length)

  def prefill(
    self, tokens: jax.Array, cache: kv_cache.KVCache, positions: jax.Array | None = None
  ) -> tuple[jax.Array, kv_cache.KVCache]:
    """Runs tokens [B, T] through the model into the cache; returns (logits [B,T,V], cache)."""
    return self._extend(tokens, cache, positions)

  def decode_step(
    self, token: jax.Array, cache: kv_cache.KVCache, position: jax.Array | None = None
  ) -> tuple[jax.Array, kv_cache.KVCache]:
    """Feeds one token per row ([B]); returns (logits [B, V], cache)."""
    token = jnp.asarray(token).reshape(-1, 1)
    position = None if position is None else jnp.asarray(position).reshape(-1, 1)
    logits, cache = self._extend(token, cache, position)
    return logits[:, 0], cache

  def _extend(
    self, tokens: jax.Array, cache: kv_cache.KVCache, positions: jax.Array | None = None
  ) -> tuple[jax.Array, kv_cache.KVCache]:
    """Runs tokens [B, T] after the cached ones; returns (logits [B, T, V], new cache).

    positions default to the slot indices (length, …, length + T − 1).  There are no segment_ids:
    each row is one document.
    """
    tokens = jnp.asarray(tokens)
    batch, num_new = tokens.shape
    kv_cache.check_room(cache, num_new)
    slots = cache.length + jnp.arange(num_new, dtype=jnp.int32)
    if positions is None:
      positions = jnp.broadcast_to(slots, (batch, num_new))
    positions = jnp.asarray(positions, jnp.int32)
    zero = jnp.zeros((), jnp.int32)
    key_positions = jax.lax.dynamic_update_slice(cache.positions, positions, (zero, cache.length))
    mask = jnp.arange(cache.max_length, dtype=jnp.int32)[None, :] <= slots[:, None]  # [T, S]
    x = self.embed(tokens)
    keys, values = cache.keys, cache.values
    for i, block in enumerate(self.blocks):
      x, k, v = block.extend(
        x,
        positions,
        keys=keys[i],
        values=values[i],
        key_positions=key_positions,
        start=cache.length,
        mask=mask,
      )
      keys, values = keys.at[i].set(k), values.at[i].set(v)  # in place under jit
    new_cache = kv_cache.KVCache(
      keys=keys, values=values, positions=key_positions, length=cache.length + num_new
    )
    return self.logits(x), new_cache


def create_sharded_model(
  config: TransformerConfig, *, mesh: jax.sharding.Mesh, rules: sharding.Rules, seed: int = 0
) -> Transformer:
  """Creates a Transformer whose parameters are born sharded (jit with out_shardings)."""
  rules = sharding.freeze_rules(rules)
  sharding.check_model_sharding(config, mesh, rules)

  def build() -> Transformer:
    return Transformer(config, rngs=nnx.Rngs(seed))

  graphdef, abstract = nnx.split(nnx.eval_shape(build))
  shardings = sharding.named_shardings(abstract, mesh, rules)
  with jax.set_mesh(mesh):
    state = jax.jit(lambda: nnx.state(build()), out_shardings=shardings)()
  return nnx.merge(graphdef, state)
