"""What the Pallas GPU kernels (fused_norm, fused_loss) share: the guarded import and block sizes."""

from __future__ import annotations

import jax

try:  # The Triton backend of Pallas is deprecated (JAX 0.11) and may be removed.
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu
except ImportError:  # pragma: no cover
  pl = plgpu = None


def available(backend: str | None = None) -> bool:
  """Whether the kernels run compiled here: a GPU backend and Pallas' Triton backend."""
  return (backend or jax.default_backend()) in ("gpu", "cuda") and plgpu is not None


def interpret() -> bool:
  """Pallas interpret mode off GPU (the CPU tests)."""
  return jax.default_backend() not in ("gpu", "cuda")


def padded(n: int) -> int:
  """Triton blocks are powers of two: the block covering n elements."""
  return 1 << max(n - 1, 0).bit_length()


def block_rows(rows: int, preferred: int) -> int:
  """The largest power of two ≤ preferred that divides rows (row blocks never straddle shards)."""
  block = preferred
  while rows % block:
    block //= 2
  return block
