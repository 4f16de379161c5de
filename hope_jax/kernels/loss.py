"""The forward reduction of the token loss: logsumexp and the label's logit, as XLA or Pallas.

``logsumexp_and_label(logits, labels)`` returns float32 ``(lse, label_logit)`` of logits
``[..., vocab]`` and integer labels ``[...]``; the negative log-likelihood is their difference
(:func:`hope_jax.training.step.token_nll`, whose backward pass stays one XLA elementwise pass).

Implementations (``implementation=``):

* ``"xla"`` — jnp: a max, then a sum of exponentials, each a pass over the logits.
* ``"pallas"`` — one Pallas kernel on the Triton backend (GPU; interpret mode elsewhere, which is
  how the CPU tests check it): each program takes a few rows and walks the vocabulary in chunks
  with an online (running-max) logsumexp, so the logits are read once.  Under a mesh it is
  ``shard_map``ped over batch and length; the vocabulary axis must be unsharded.
* ``"auto"`` — ``"pallas"`` on GPU when the Triton backend exists and the vocabulary axis of the
  logits is unsharded, else ``"xla"``.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp

from hope_jax.kernels import _triton as pallas_gpu
from hope_jax.parallel import sharding
from hope_jax.kernels._triton import block_rows, interpret, padded, pl, plgpu

LOSS_IMPLS = pallas_gpu.IMPLS
# Kernel shape (benchmarks/loss_cost.py --sweep times alternatives): rows per program, vocabulary
# columns per loop step (a power of two), warps.
ROWS, CHUNK, WARPS = 2, 2048, 4
_LOGIT_AXES = ("batch", "length", "vocab")


def resolve_implementation(requested: str, *, backend: str | None = None) -> str:
  """Returns the implementation to use: ``requested`` itself unless it is "auto"."""
  return pallas_gpu.resolve(requested, field="loss_impl", axes=_LOGIT_AXES, backend=backend)


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
    x = plgpu.load(x_ref.at[r[:, None], c[None, :]], mask=inside,
                   other=-jnp.inf).astype(jnp.float32)
    new_peak = jnp.maximum(peak, jnp.max(x, axis=1))
    total = (total * jnp.exp(peak - new_peak)
             + jnp.sum(jnp.exp(x - new_peak[:, None]), axis=1))
    picked = picked + jnp.sum(jnp.where(c[None, :] == labels[:, None], x, 0.0), axis=1)
    return new_peak, total, picked

  # A finite starting max: a chunk of only −inf logits (masked classes) then adds exp(−inf) = 0
  # instead of exp(−inf − (−inf)) = NaN.
  start = (jnp.full((rows,), jnp.finfo(jnp.float32).min, jnp.float32),
           jnp.zeros((rows,), jnp.float32), jnp.zeros((rows,), jnp.float32))
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
      functools.partial(_kernel, rows=block, chunk=chunk), grid=(rows // block,),
      out_shape=[out, out], interpret=interpret(), name="logsumexp_and_label",
      compiler_params=plgpu.CompilerParams(num_warps=WARPS),
  )(flat, labels.reshape(rows).astype(jnp.int32))
  return lse.reshape(lead), picked.reshape(lead)


def pallas_logsumexp_and_label(logits: jax.Array,
                               labels: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Returns float32 (logsumexp, the label's logit) through the one-pass Pallas kernel."""
  # Model logits [batch, length, vocab] are split over their rows; other ranks run whole.
  axes = _LOGIT_AXES if logits.ndim == 3 else (None,) * logits.ndim
  pallas_gpu.check_runnable(axes, field="loss_impl", what="the logits' vocabulary axis")
  return sharding.map_shards(_local, in_axes=(axes, axes[:-1]), out_axes=(axes[:-1], axes[:-1]))(
      logits, labels)


IMPLEMENTATIONS: dict[str, Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]] = {
    "xla": xla_logsumexp_and_label,
    "pallas": pallas_logsumexp_and_label,
}


def logsumexp_and_label(logits: jax.Array, labels: jax.Array, *,
                        implementation: str = "auto") -> tuple[jax.Array, jax.Array]:
  """Returns float32 (logsumexp over the last axis, logits at labels), shapes labels.shape."""
  return IMPLEMENTATIONS[resolve_implementation(implementation)](logits, labels)
