"""What the Pallas Triton kernels (norm, loss) share: the guarded import, checks, block sizes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import jax

from hope_jax.parallel import sharding

try:  # The Triton backend of Pallas is deprecated (JAX 0.11) and may be removed.
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import triton as plgpu
except ImportError:  # pragma: no cover
  pl = plgpu = cast(Any, None)  # callers check `plgpu is not None` first


def available(backend: str | None = None) -> bool:
  """Whether the kernels run compiled here: a GPU backend and Pallas' Triton backend."""
  return (backend or jax.default_backend()) in ("gpu", "cuda") and plgpu is not None


def feature_shards(axes: Sequence[str | None]) -> int:
  """Shards of the last (feature) dimension of an activation with these logical axes."""
  return sharding.dimension_shards(axes, len(axes) - 1)


def check_runnable(axes: Sequence[str | None], *, field: str, what: str) -> None:
  """Raises ValueError naming ``field`` when the Triton backend is missing or the feature
  dimension (the last of ``axes``, described as ``what``) is sharded."""
  if plgpu is None:  # pragma: no cover
    raise ValueError(
      f"{field}='pallas' needs jax.experimental.pallas.triton, which this JAX "
      f"lacks; use {field}='xla'"
    )
  if feature_shards(axes) > 1:
    raise ValueError(
      f"{field}='pallas' needs {what} unsharded, got {axes[-1]} -> "
      f"{sharding.logical_spec(axes, dedupe=True)[-1]}"
    )


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
