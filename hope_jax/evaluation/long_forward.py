"""A forward pass for long-context evaluation whose memory grows only with what must be kept.

The ordinary evaluation body (:func:`hope_jax.evaluation.forward.next_token_outputs`) compiles the
whole model as one program; at a million tokens its activations need ~140 GiB.  Here the model runs
one block at a time, each block a jitted program whose residual-stream inputs are donated:

1. per-token work in slices of ``token_chunk`` positions (``lax.map``): the residual add and
   attention norm, then the block's q/k/v projections with the encoder's rotation;
2. attention over the whole sequence's keys and values: cuDNN's flash attention on GPU for rotary
   encoders (it never forms [T, T]), else :func:`hope_jax.kernels.blockwise_attention.causal_attention`
   (blocked online softmax in XLA; on CPU and for the bias encoders ALiBi and KERPLE);
3. per-token work in slices again: output projection, residual add and MLP norm, and the MLP.

What lives between blocks is the residual stream (x and the last MLP output, [B, T, d] in the
compute dtype); inside a block, also q, k, v and the attention output.  The output head runs in
slices of ``logits_chunk`` tokens (:func:`hope_jax.evaluation.forward.head_outputs`), so no
[T, vocab] buffer exists either.  Every piece is the model's own (``embed``, the blocks' norms,
``Attention.kernel_inputs``/``project_output``/``logit_bias``, ``MLP``, ``logits``), so inference-time
scaling and log-n query scaling apply as in the ordinary pass.  Sequences are right-padded to a
whole number of slices (causal attention: earlier positions are unchanged) and the padding is cut.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from jax.sharding import NamedSharding

from hope_jax import kernels
from hope_jax.evaluation import forward as eval_forward
from hope_jax.kernels import blockwise_attention
from hope_jax.model import TransformerConfig
from hope_jax.model import attention as model_attention
from hope_jax.parallel import sharding

ATTENTION_KERNELS = ("auto", "cudnn", "blockwise")
_PAD_UNIT = 8  # sequences no longer than one attention block are padded to a multiple of this


@dataclasses.dataclass(frozen=True)
class LongForwardOptions:
  """Slice sizes of the layer-by-layer forward pass, and its attention kernel."""

  token_chunk: int = 65536  # positions per slice of the per-token work (norms, projections, MLP)
  attention_block: int = 2048  # query and key block of the blockwise (XLA) attention
  logits_chunk: int = 8192  # tokens per slice of the output head
  attention: str = "auto"  # "auto": cuDNN on GPU for rotary encoders, else "blockwise"

  def __post_init__(self):
    """Validates the fields, naming the one that is wrong."""
    for name in ("token_chunk", "attention_block", "logits_chunk"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")
    if self.attention_block % _PAD_UNIT:
      raise ValueError(
        f"attention_block must be a multiple of {_PAD_UNIT}, got "
        f"attention_block={self.attention_block}"
      )
    if self.token_chunk % self.attention_block:
      raise ValueError(
        f"token_chunk must be a multiple of attention_block="
        f"{self.attention_block}, got token_chunk={self.token_chunk}"
      )
    if self.attention not in ATTENTION_KERNELS:
      raise ValueError(
        f"attention must be one of {ATTENTION_KERNELS}, got attention={self.attention!r}"
      )

  def plan(self, length: int) -> tuple[int, int]:
    """Returns (padded length, slice length) for a sequence of length positions."""
    slices = math.ceil(length / self.token_chunk)
    unit = self.attention_block if length > self.attention_block else _PAD_UNIT
    chunk = math.ceil(math.ceil(length / slices) / unit) * unit
    return slices * chunk, chunk


def _over_slices(fn: Callable[..., Any], chunk: int, *arrays: jax.Array | None) -> Any:
  """Applies fn to [B, chunk, ...] slices of arrays [B, T, ...] (None passes through) in order."""
  length = next(a for a in arrays if a is not None).shape[1]
  if length == chunk:
    return fn(*arrays)
  slices = length // chunk

  def split(y: jax.Array) -> jax.Array:
    return y.reshape(y.shape[0], slices, chunk, *y.shape[2:]).swapaxes(0, 1)

  def join(y: jax.Array) -> jax.Array:
    return y.swapaxes(0, 1).reshape(y.shape[1], length, *y.shape[3:])

  out = jax.lax.map(lambda sliced: fn(*sliced), jax.tree.map(split, arrays))
  return jax.tree.map(join, out)


def _model_attention(
  config: TransformerConfig, dtype: Any, length: int, backend: str | None = None
) -> str:
  """The attention_impl the model's config resolves to in ``dtype`` at ``length`` tokens."""
  return kernels.select(
    "attention_impl",
    config.attention_impl,
    backend=backend,
    dtype=dtype,
    head_dim=config.head_dim,
    length=length,
    has_bias=config.encoding.bias is not None,
    has_segments=False,
  )


def blockwise_on_gpu_hint(
  config: TransformerConfig, length: int, backend: str | None = None
) -> str | None:
  """A one-line hint when only a float32 compute dtype keeps the long pass off cuDNN's attention."""
  if config.encoding.bias is not None:
    return None  # ALiBi, KERPLE: the long pass attends blockwise in any dtype
  dtype = config.compute_jnp_dtype
  if _model_attention(config, dtype, length, backend) == "cudnn":
    return None
  if _model_attention(config, jnp.bfloat16, length, backend) != "cudnn":
    return None  # a head size, the backend or an explicit choice rules cuDNN out anyway
  return (
    f"the long forward pass attends with the blockwise XLA kernel: cuDNN's flash attention "
    f"needs bfloat16 or float16 and model.dtype is {jnp.dtype(dtype).name}; "
    f"--config.model.dtype=bfloat16 evaluates in bfloat16 through cuDNN (the parameters keep "
    f"their dtype)"
  )


class LongForward:
  """The model's forward pass one block at a time, for evaluation at up to a million tokens."""

  def __init__(
    self,
    graphdef: nnx.GraphDef,
    params: nnx.State,
    model_state: nnx.State,
    *,
    mesh: jax.sharding.Mesh,
    rules: Any,
    options: LongForwardOptions = LongForwardOptions(),
  ):
    """Splits the model into its blocks' states; nothing is compiled until the first call."""
    self.net = nnx.merge(graphdef, params, model_state)
    self.config, self.options = self.net.config, options
    self.mesh, self.rules = mesh, sharding.freeze_rules(rules)
    self.graphdef, self.params, self.model_state = graphdef, params, model_state
    self.block_graphdef = nnx.split(self.net.blocks[0])[0]
    self.block_states = [nnx.split(block)[1] for block in self.net.blocks]
    self.attention = self._attention_kernel()
    self._rows = NamedSharding(mesh, sharding.logical_spec(("batch", None), self.rules))
    self._embed = jax.jit(self._embed_body)
    self._block = jax.jit(
      self._block_body, static_argnames=("chunk",), donate_argnames=("x", "update")
    )
    self._head = jax.jit(self._head_body)

  def _attention_kernel(self) -> str:
    """ "cudnn" or "blockwise": options.attention, with "auto" resolved as the model resolves it."""
    c, requested = self.config, self.options.attention
    if requested != "auto":
      return requested
    # The pass pads to whole token chunks: the length it attends over.
    resolved = _model_attention(c, c.compute_jnp_dtype, self.options.token_chunk)
    hint = blockwise_on_gpu_hint(c, self.options.token_chunk)
    if hint:
      logging.warning(hint)
    return "cudnn" if resolved == "cudnn" and c.encoding.bias is None else "blockwise"

  # ---- jitted pieces ----------------------------------------------------------------------------

  def _embed_body(self, params: nnx.State, tokens: jax.Array) -> jax.Array:
    with nnx.logical_axis_rules(self.rules):
      return nnx.merge(self.graphdef, params, self.model_state).embed(tokens)

  def _block_body(
    self,
    state: nnx.State,
    x: jax.Array,
    update: jax.Array | None,
    positions: jax.Array,
    *,
    chunk: int,
  ) -> tuple[jax.Array, jax.Array]:
    """One decoder block over the whole (padded) sequence; returns (x', update')."""
    with nnx.logical_axis_rules(self.rules):
      block = nnx.merge(self.block_graphdef, state)
      attn = block.attn

      def project(x, update, positions):
        x, normed = block.attn_norm.add_and_norm(x, update)
        return (x, *attn.kernel_inputs(normed, positions))

      x, q, k, v = _over_slices(project, chunk, x, update, positions)
      out = self._attend(attn, q, k, v, positions)

      def finish(x, out):
        x, normed = block.mlp_norm.add_and_norm(x, attn.project_output(out))
        return x, block.mlp(normed)

      return _over_slices(finish, chunk, x, out)

  def _attend(
    self,
    attn: model_attention.Attention,
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    positions: jax.Array,
  ) -> jax.Array:
    """Causal attention of the whole sequence with the kernel chosen at construction."""
    if self.attention == "cudnn":
      return jax.nn.dot_product_attention(
        q, k, v, scale=attn.scale, is_causal=True, implementation="cudnn"
      )
    # A bias encoder's logit_bias returns an array, never None.
    bias_fn = (
      cast(blockwise_attention.BiasFn, attn.logit_bias)
      if self.config.encoding.bias is not None
      else None
    )
    block = min(self.options.attention_block, q.shape[1])
    return blockwise_attention.causal_attention(
      q, k, v, scale=attn.scale, block=block, positions=positions, bias_fn=bias_fn
    )

  def _head_body(
    self, params: nnx.State, x: jax.Array, update: jax.Array | None, labels: jax.Array
  ) -> dict[str, jax.Array]:
    with nnx.logical_axis_rules(self.rules):
      net = nnx.merge(self.graphdef, params, self.model_state)
      return eval_forward.head_outputs(
        net, x, labels, update=update, chunk_tokens=self.options.logits_chunk
      )

  # ---- public passes ----------------------------------------------------------------------------

  def residual_stream(
    self, tokens: np.ndarray, positions: np.ndarray | None = None, *, num_blocks: int | None = None
  ) -> tuple[jax.Array, jax.Array | None, int]:
    """Runs tokens [B, T] through every block; returns (x, update, T), each [B, padded T, d].

    x + update is the residual stream after the last block (the final norm adds them);
    ``num_blocks`` stops after that many blocks (see :meth:`warm_up`; 0 leaves update None).
    """
    tokens = np.asarray(tokens, np.int32)
    batch, length = tokens.shape
    sharding.check_batch(batch, self.mesh, self.rules, field="evaluation batch")
    padded, chunk = self.options.plan(length)
    if positions is None:
      positions = np.broadcast_to(np.arange(padded, dtype=np.int32), (batch, padded))
    else:
      positions = np.pad(
        np.asarray(positions, np.int32), ((0, 0), (0, padded - length)), mode="edge"
      )
    tokens = np.pad(tokens, ((0, 0), (0, padded - length)))
    tokens, positions = jax.device_put((tokens, positions), self._rows)
    with jax.set_mesh(self.mesh):
      x, update = self._embed(self.params, tokens), None
      for state in self.block_states[:num_blocks]:
        x, update = self._block(state, x, update, positions, chunk=chunk)
    return x, update, length

  def hidden_states(self, tokens: np.ndarray, positions: np.ndarray | None = None) -> jax.Array:
    """The residual stream after the last block [B, T, d], as ``Transformer.hidden_states``."""
    x, update, length = self.residual_stream(tokens, positions)
    assert update is not None  # every block ran, and there is at least one
    return (x + update)[:, :length]

  def next_token_outputs(
    self, tokens: np.ndarray, positions: np.ndarray | None = None, *, num_blocks: int | None = None
  ) -> dict[str, jax.Array]:
    """Teacher-forced float32 NLL and greedy argmax [B, T-1] of tokens [B, T] (the eval body)."""
    tokens = np.asarray(tokens, np.int32)
    x, update, length = self.residual_stream(
      tokens[:, :-1],
      None if positions is None else np.asarray(positions)[:, :-1],
      num_blocks=num_blocks,
    )
    labels = np.pad(tokens[:, 1:], ((0, 0), (0, x.shape[1] - length)))
    with jax.set_mesh(self.mesh):
      out = self._head(self.params, x, update, jax.device_put(labels, self._rows))
    return {name: value[:, :length] for name, value in out.items()}

  def warm_up(self, tokens: np.ndarray) -> None:
    """Compiles every program of a pass over tokens [B, T] by running two blocks, not all."""
    jax.block_until_ready(self.next_token_outputs(tokens, num_blocks=2))
