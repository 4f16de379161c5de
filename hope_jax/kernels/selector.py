"""The one choice of kernel: an implementation name per operation from its config field.

``select(field, requested, **facts)`` returns the implementation to run for one operation, named
by its ``TransformerConfig`` field: ``requested`` itself when it is explicit (after the checks
that need no arrays), else what ``"auto"`` picks from the backend and the facts:

* ``attention_impl`` (``"auto"``, ``"cudnn"``, ``"xla"``, ``"splash"``): ``"cudnn"`` on GPU when
  the compute dtype is bfloat16/float16, head_dim ≤ 128 and a multiple of 8, the sequence
  lengths are multiples of ``CUDNN_LENGTH_MULTIPLE`` and there are no ``segment_ids``, a logit
  bias (ALiBi, KERPLE) included; else ``"xla"``.  Facts: dtype, head_dim, length, has_bias,
  has_segments.
  An explicit ``"splash"`` needs no bias and a length that is a multiple of ``SPLASH_BLOCK``.
* ``norm_impl`` and ``loss_impl`` (``"auto"``, ``"xla"``, ``"pallas"``): ``"pallas"`` on GPU
  where Pallas' Triton backend exists and the kernel's feature axis is unsharded; else
  ``"xla"``.  Fact: feature_sharded.
* ``projection_impl`` (``"auto"``, ``"xla"``, ``"pallas"``): ``"xla"`` when nothing rotates;
  ``"pallas"`` on a Hopper GPU for a split-half layout in bfloat16/float16 whose per-device
  shapes tile (``tiling_problem`` None); else ``"xla"``.  An explicit ``"pallas"`` where those
  do not hold raises.  Facts: dtype, layout, rotates, tiling_problem.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from hope_jax.kernels import _triton, rotary_kernel

IMPLEMENTATIONS: dict[str, tuple[str, ...]] = {
  "attention_impl": ("auto", "cudnn", "xla", "splash"),
  "norm_impl": ("auto", "xla", "pallas"),
  "loss_impl": ("auto", "xla", "pallas"),
  "projection_impl": ("auto", "xla", "pallas"),
}
CUDNN_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
# cuDNN's fused attention rejected a 7-token sequence in training on an H200 (jax checks only
# the biased case, which needs even lengths); "auto" keeps cuDNN to even lengths.
CUDNN_LENGTH_MULTIPLE = 2
SPLASH_BLOCK = 128  # splash kernels tile the sequence in multiples of this.
PROJECTION_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def _on_gpu(backend: str | None) -> bool:
  """Whether the backend (default: JAX's) is a GPU."""
  return (backend or jax.default_backend()) in ("gpu", "cuda")


def _attention(
  requested: str,
  backend: str | None,
  *,
  dtype: Any,
  head_dim: int,
  length: int,
  has_bias: bool,
  has_segments: bool,
) -> str:
  """attention_impl: checks an explicit splash, picks cuDNN or XLA for "auto"."""
  if requested == "splash":
    if has_bias:
      raise ValueError("attention_impl='splash' cannot take a logit bias (ALiBi/KERPLE)")
    if length % SPLASH_BLOCK:
      raise ValueError(
        f"attention_impl='splash' needs a sequence length that is a multiple of "
        f"{SPLASH_BLOCK}, got length={length}"
      )
  if requested != "auto":
    return requested
  cudnn_ok = (
    _on_gpu(backend)
    and jnp.dtype(dtype) in CUDNN_DTYPES
    and head_dim <= 128
    and head_dim % 8 == 0
    and length % CUDNN_LENGTH_MULTIPLE == 0
    and not has_segments
  )
  return "cudnn" if cudnn_ok else "xla"


def _triton_kernel(requested: str, backend: str | None, *, feature_sharded: bool) -> str:
  """norm_impl and loss_impl: the Triton kernel on GPU when its feature axis is whole."""
  if requested != "auto":
    return requested
  return "pallas" if _triton.available(backend) and not feature_sharded else "xla"


def _projection(
  requested: str,
  backend: str | None,
  *,
  dtype: Any,
  layout: str,
  rotates: bool,
  tiling_problem: str | None,
) -> str:
  """projection_impl: the Mosaic GPU kernel where it runs and the shapes tile, else XLA."""
  if requested == "xla" or not rotates:
    return "xla"
  supported = layout == "split_half" and jnp.dtype(dtype) in PROJECTION_DTYPES
  on_gpu = _on_gpu(backend)
  if requested == "pallas":
    if rotary_kernel.plgpu is None:  # pragma: no cover
      raise ValueError("projection_impl='pallas' needs jax.experimental.pallas.mosaic_gpu")
    if not supported:
      raise ValueError(
        f"projection_impl='pallas' needs the split_half layout and a bfloat16 or "
        f"float16 compute dtype, got layout={layout!r}, dtype={jnp.dtype(dtype)}"
      )
    if on_gpu and not rotary_kernel.on_hopper():
      raise ValueError(
        f"projection_impl='pallas' needs a Hopper GPU (WGMMA), got {jax.devices()[0].device_kind}"
      )
    if tiling_problem is not None:
      raise ValueError(f"projection_impl='pallas' cannot tile this projection: {tiling_problem}")
    return "pallas"
  hopper = rotary_kernel.plgpu is not None and on_gpu and rotary_kernel.on_hopper()
  return "pallas" if supported and hopper and tiling_problem is None else "xla"


_RULES: dict[str, Callable[..., str]] = {
  "attention_impl": _attention,
  "norm_impl": _triton_kernel,
  "loss_impl": _triton_kernel,
  "projection_impl": _projection,
}


def check(field: str, requested: str) -> None:
  """Raises ValueError naming the field and value unless requested is one of its choices."""
  if field not in IMPLEMENTATIONS:
    raise ValueError(f"field must be one of {sorted(IMPLEMENTATIONS)}, got field={field!r}")
  if requested not in IMPLEMENTATIONS[field]:
    raise ValueError(f"{field} must be one of {IMPLEMENTATIONS[field]}, got {field}={requested!r}")


def select(field: str, requested: str, *, backend: str | None = None, **facts: Any) -> str:
  """Returns the implementation to run for ``field`` (see the module docstring for the facts)."""
  check(field, requested)
  return _RULES[field](requested, backend, **facts)
