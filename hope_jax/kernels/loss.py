"""The token loss: per-token NLL, its reduction (logsumexp, the label's logit) XLA or Pallas.

``token_nll(logits, labels)`` is the entry point: float32 NLL of integer labels ``[...]`` under
logits ``[..., vocab]``.  Its forward is ``logsumexp_and_label``, float32 ``(lse, label_logit)``,
whose difference is the NLL; its backward pass is one XLA elementwise pass.

Implementations (``implementation=``):

* ``"xla"`` — jnp: a max, then a sum of exponentials, each a pass over the logits.
* ``"pallas"`` — one Pallas kernel on the Triton backend (GPU; interpret mode elsewhere, which is
  how the CPU tests check it): each program takes a few rows and walks the vocabulary in chunks
  with an online (running-max) logsumexp, so the logits are read once.  Under a mesh it is
  ``shard_map``ped over batch and length; the vocabulary axis must be unsharded.
* ``"auto"`` — ``"pallas"`` on GPU when the Triton backend exists and the vocabulary axis of the
  logits is unsharded, else ``"xla"`` (:func:`hope_jax.kernels.selector.select`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from hope_jax.kernels import _triton as pallas_gpu
from hope_jax.kernels._triton import block_rows, interpret, padded, pl, plgpu
from hope_jax.kernels.selector import select
from hope_jax.parallel import sharding

# Kernel shape (benchmarks/loss_cost.py --sweep times alternatives): rows per program, vocabulary
# columns per loop step (a power of two), warps.
ROWS, CHUNK, WARPS = 2, 2048, 4
_LOGIT_AXES = ("batch", "length", "vocab")


def xla_logsumexp_and_label(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Returns float32 (logsumexp over the last axis, the label's logit) with jnp."""
  lf = logits.astype(jnp.float32)
  peak = jnp.max(lf, axis=-1, keepdims=True)
  lse = peak + jnp.log(jnp.sum(jnp.exp(lf - peak), axis=-1, keepdims=True))
  label_logit = jnp.take_along_axis(lf, labels[..., None], axis=-1)
  return lse[..., 0], label_logit[..., 0]


def _kernel(x_ref, label_ref, lse_ref, picked_ref, *, rows: int, chunk: int):
  """One block of rows: a running max and sum of exponentials over vocabulary chunks."""
  vocab = x_ref.shape[1]
  r = pl.program_id(0) * rows + jnp.arange(rows)
  labels = plgpu.load(label_ref.at[r])

  def body(i, carry):
    peak, total, picked = carry
    c = i * chunk + jnp.arange(chunk)
    inside = c[None, :] < vocab
    x = plgpu.load(x_ref.at[r[:, None], c[None, :]], mask=inside, other=-jnp.inf).astype(
      jnp.float32
    )
    new_peak = jnp.maximum(peak, jnp.max(x, axis=1))
    total = total * jnp.exp(peak - new_peak) + jnp.sum(jnp.exp(x - new_peak[:, None]), axis=1)
    picked = picked + jnp.sum(jnp.where(c[None, :] == labels[:, None], x, 0.0), axis=1)
    return new_peak, total, picked

  # A finite starting max: a chunk of only −inf logits (masked classes) then adds exp(−inf) = 0
  # instead of exp(−inf − (−inf)) = NaN.
  start = (
    jnp.full((rows,), jnp.finfo(jnp.float32).min, jnp.float32),
    jnp.zeros((rows,), jnp.float32),
    jnp.zeros((rows,), jnp.float32),
  )
  peak, total, picked = jax.lax.fori_loop(0, pl.cdiv(vocab, chunk), body, start)
  plgpu.store(lse_ref.at[r], peak + jnp.log(total))
  plgpu.store(picked_ref.at[r], picked)


def _local(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The kernel on local arrays [..., vocab] and [...]; returns float32 (lse, label logit)."""
  *lead, vocab = logits.shape
  flat = logits.reshape(-1, vocab)
  rows = flat.shape[0]
  block = block_rows(rows, ROWS)
  chunk = min(CHUNK, padded(vocab))
  out = jax.ShapeDtypeStruct((rows,), jnp.float32)
  lse, picked = pl.pallas_call(
    functools.partial(_kernel, rows=block, chunk=chunk),
    grid=(rows // block,),
    out_shape=[out, out],
    interpret=interpret(),
    name="logsumexp_and_label",
    compiler_params=plgpu.CompilerParams(num_warps=WARPS),
  )(flat, labels.reshape(rows).astype(jnp.int32))
  return lse.reshape(lead), picked.reshape(lead)


def pallas_logsumexp_and_label(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Returns float32 (logsumexp, the label's logit) through the one-pass Pallas kernel."""
  # Model logits [batch, length, vocab] are split over their rows; other ranks run whole.
  axes = _LOGIT_AXES if logits.ndim == 3 else (None,) * logits.ndim
  pallas_gpu.check_runnable(axes, field="loss_impl", what="the logits' vocabulary axis")
  return sharding.map_shards(_local, in_axes=(axes, axes[:-1]), out_axes=(axes[:-1], axes[:-1]))(
    logits, labels
  )


IMPLEMENTATIONS: dict[str, Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]] = {
  "xla": xla_logsumexp_and_label,
  "pallas": pallas_logsumexp_and_label,
}


def logsumexp_and_label(
  logits: jax.Array, labels: jax.Array, *, implementation: str = "auto"
) -> tuple[jax.Array, jax.Array]:
  """Returns float32 (logsumexp over the last axis, logits at labels), shapes labels.shape."""
  impl = select(
    "loss_impl", implementation, feature_sharded=pallas_gpu.feature_shards(_LOGIT_AXES) > 1
  )
  return IMPLEMENTATIONS[impl](logits, labels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def token_nll(logits: jax.Array, labels: jax.Array, implementation: str = "auto") -> jax.Array:
  """Returns float32 per-token negative log-likelihood [..., T] of integer labels under logits.

  The forward reduction is :func:`logsumexp_and_label` (``implementation``: "auto", "xla" or
  "pallas").  The backward pass forms softmax − one-hot in one elementwise pass (autodiff
  scattered the one-hot into a materialised float32 gradient, which kept the cast to bf16 a
  pass of its own).
  """
  return _token_nll_fwd(logits, labels, implementation)[0]


def _token_nll_fwd(logits, labels, implementation):
  """Forward pass of token_nll: NLL = logsumexp − label logit; keeps logits, labels, logsumexp."""
  lse, label_logit = logsumexp_and_label(logits, labels, implementation=implementation)
  return lse - label_logit, (logits, labels, lse[..., None])


def _token_nll_bwd(implementation, residuals, g):
  """Backward pass of token_nll: g · (softmax − one-hot), in the logits' dtype."""
  del implementation
  logits, labels, lse = residuals
  classes = jax.lax.broadcasted_iota(labels.dtype, logits.shape, logits.ndim - 1)
  one_hot = (classes == labels[..., None]).astype(jnp.float32)
  probs = jnp.exp(logits.astype(jnp.float32) - lse)
  return ((probs - one_hot) * g[..., None]).astype(logits.dtype), None


token_nll.defvjp(_token_nll_fwd, _token_nll_bwd)
