"""What the rotary kernel's and the rotary projection's tests share: a small tiling, bf16 inputs."""

import jax.numpy as jnp
import numpy as np
import pytest

from hope_jax.kernels import rotary_kernel as rk

needs_mosaic = pytest.mark.skipif(rk.plgpu is None, reason="this JAX has no Pallas Mosaic GPU")
SMALL = rk.TileConfig(tile_m=64, tile_n=64, tile_k=64, stages=2, epi_m=64, grid_tile_width=2)


def bf16_inputs(m: int, d: int, n: int, seed: int = 0) -> tuple[jnp.ndarray, jnp.ndarray]:
  """Returns x [m, d] and w [d, n] in bf16, w scaled by 1/√d."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((m, d)).astype(np.float32)
  w = (rng.standard_normal((d, n)) / np.sqrt(d)).astype(np.float32)
  return jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)
