"""Memory-light forward passes for evaluation: jitted model bodies, chunked output head, batching.

A *body* is ``body(model, tokens [B, T], positions [B, T] | None) -> {name: array [B, ...]}``;
:func:`compile_body` jits it on a mesh with tokens sharded along the batch axis, and
:func:`batched_call` feeds it rows in batches padded to the number of batch shards.
:func:`next_token_outputs` is the body behind perplexity and the probes: teacher-forced NLL and
greedy argmax with the output head run over slices of the sequence, so [B, T, vocab] float32
logits never exist (a 65,536-token window of a 16,384-word model would need 4 GiB for them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding

from hope_jax import kernels, model
from hope_jax.parallel import sharding

Body = Callable[[model.Transformer, jax.Array, "jax.Array | None"], dict[str, jax.Array]]


def compile_body(
  body: Body,
  graphdef: nnx.GraphDef,
  params: nnx.State,
  model_state: nnx.State,
  *,
  mesh: jax.sharding.Mesh,
  rules: Any,
) -> Callable[..., Any]:
  """Returns fn(tokens [B, T], positions=None) -> body(merged model, ...), jitted on the mesh."""
  rows = NamedSharding(mesh, sharding.logical_spec(("batch", None), rules))

  @jax.jit
  def run(params, tokens, positions):
    with nnx.logical_axis_rules(rules):
      return body(nnx.merge(graphdef, params, model_state), tokens, positions)

  def fn(tokens, positions=None):
    sharding.check_batch(np.shape(tokens)[0], mesh, rules, field="evaluation batch")
    tokens = jax.device_put(jnp.asarray(tokens, jnp.int32), rows)
    if positions is not None:
      positions = jax.device_put(jnp.asarray(positions, jnp.int32), rows)
    with jax.set_mesh(mesh):
      return run(params, tokens, positions)

  return fn


def next_token_outputs(
  net: model.Transformer,
  tokens: jax.Array,
  positions: jax.Array | None = None,
  *,
  chunk_tokens: int,
) -> dict[str, jax.Array]:
  """Teacher-forced float32 NLL and greedy argmax [B, T-1] of tokens [B, T] (see head_outputs).

  The model reads the T - 1 inputs, or all T tokens where that makes a length cuDNN's attention
  takes (``CUDNN_LENGTH_MULTIPLE``: a window of 2^k tokens would otherwise give 2^k - 1, and a GPU
  would fall back to XLA's [T, T] scores); causal attention keeps the first T - 1 outputs the same.
  """
  length = tokens.shape[1] - 1
  multiple = kernels.selector.CUDNN_LENGTH_MULTIPLE
  width = -(-length // multiple) * multiple
  width = width if width <= tokens.shape[1] else length
  inputs = tokens[:, :width], None if positions is None else positions[:, :width]
  x = net.hidden_states(*inputs)[:, :length]
  return head_outputs(net, x, tokens[:, 1:], chunk_tokens=chunk_tokens)


def head_outputs(
  net: model.Transformer,
  x: jax.Array,
  labels: jax.Array,
  *,
  chunk_tokens: int,
  update: jax.Array | None = None,
) -> dict[str, jax.Array]:
  """Float32 NLL of labels [B, T] and greedy argmax under the head of the stream x (+ update).

  The output head runs over slices of about chunk_tokens tokens (B rows × T/n positions) in a
  sequential ``lax.map``, so at most one slice of logits is alive at a time.
  """
  batch, length = x.shape[:2]
  chunk = max(1, min(length, chunk_tokens // batch))
  slices = -(-length // chunk)
  pad = slices * chunk - length

  def head(x_slice, update_slice, label_slice):
    logits = net.logits(x_slice, update_slice)
    return (
      kernels.token_nll(logits, label_slice, net.config.loss_impl),
      jnp.argmax(logits, axis=-1).astype(jnp.int32),
    )

  if slices == 1:
    nll, argmax = head(x, update, labels)
    return {"nll": nll, "argmax": argmax}

  def split(y: jax.Array) -> jax.Array:
    y = jnp.pad(y, ((0, 0), (0, pad)) + ((0, 0),) * (y.ndim - 2))
    return y.reshape(batch, slices, chunk, *y.shape[2:]).swapaxes(0, 1)

  nll, argmax = jax.lax.map(lambda a: head(*a), jax.tree.map(split, (x, update, labels)))
  unslice = lambda y: y.swapaxes(0, 1).reshape(batch, slices * chunk)[:, :length]  # noqa: E731
  return {"nll": unslice(nll), "argmax": unslice(argmax)}


def batched_call(
  fn: Callable[..., Any],
  tokens: np.ndarray,
  *,
  batch_size: int,
  batch_divisor: int = 1,
  positions: np.ndarray | None = None,
) -> Any:
  """Runs fn over rows in batches (the last padded to the divisor); concatenates per-row outputs.

  Returns a pytree shaped like fn's output (an array, or e.g. a dict of arrays).
  """
  batch_size = max(batch_divisor, batch_size // batch_divisor * batch_divisor)
  outputs = []
  for start in range(0, tokens.shape[0], batch_size):
    chunks = [tokens[start : start + batch_size]]
    if positions is not None:
      chunks.append(positions[start : start + batch_size])
    rows = chunks[0].shape[0]
    pad = -rows % batch_divisor
    if pad:
      chunks = [np.concatenate([c, np.repeat(c[-1:], pad, axis=0)]) for c in chunks]
    out = jax.device_get(fn(*chunks))
    outputs.append(jax.tree.map(lambda y, rows=rows: np.asarray(y)[:rows], out))
  if not outputs:
    raise ValueError(f"batched_call needs at least one row, got tokens.shape={tokens.shape}")
  return jax.tree.map(lambda *ys: np.concatenate(ys), *outputs)
