"""The Mosaic GPU rotary kernel (interpret mode on the CPU; natively with JAX_PLATFORMS=cuda on a
Hopper GPU) against a float64 reference; its tiling and shared-memory checks."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from rotary_helpers import SMALL, bf16_inputs, needs_mosaic

from hope_jax.kernels import rotary_kernel as rk
from hope_jax.positional import encoders


def _reference(x, w, positions, freqs, head_dim):
  """float64 rotate(x @ w), split-half pairs, angles position · θ reduced in float64."""
  y = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
  y = y.reshape(y.shape[0], -1, head_dim)
  angles = np.mod(np.asarray(positions, np.float64)[:, None] * freqs.astype(np.float64), 2 * np.pi)
  cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
  a, b = y[..., : head_dim // 2], y[..., head_dim // 2 :]
  return np.concatenate([a * cos - b * sin, b * cos + a * sin], -1).reshape(y.shape[0], -1)


@needs_mosaic
@pytest.mark.parametrize(
  "head_dim, encoder, m, n, tiles",
  [
    (64, "hope", 256, 256, SMALL),  # 4 × 2 tiles over the grid of 4: the cos/sin buffer reused
    (32, "rope", 64, 128, dataclasses.replace(SMALL, stages=3, delay_release=1)),
    (128, "hope", 64, 256, dataclasses.replace(SMALL, tile_n=128)),
    # 2 × 1 tiles of 128 rows: each epilogue has two 64-row rounds through one store slot
    (64, "hope", 256, 128, dataclasses.replace(SMALL, tile_m=128)),
  ],
)
def test_kernel_matches_float64(head_dim, encoder, m, n, tiles):
  """Forward against float64 at positions up to 10^6, one bf16 rounding of the output."""
  d = 128
  x, w = bf16_inputs(m, d, n)
  positions = np.concatenate([np.arange(m // 2), 1_000_000 + 7 * np.arange(m // 2)])
  positions = positions.astype(np.int32)
  freqs = (
    encoders.hope_frequencies(head_dim, train_length=64)
    if encoder == "hope"
    else encoders.rope_frequencies(head_dim)
  )
  angles = encoders.rotation_angles(positions, freqs)
  out = rk.pallas_rotary_matmul(
    x, w, jnp.cos(angles), jnp.sin(angles), head_dim=head_dim, tiles=tiles
  )
  assert out.shape == (m, n) and out.dtype == jnp.bfloat16
  expected = _reference(x, w, positions, freqs, head_dim)
  np.testing.assert_allclose(np.asarray(out, np.float64), expected, atol=1e-3, rtol=2**-8)


def test_tiling_problems():
  """What tiling_problem rejects, each naming the field; the shared-memory budget."""
  assert rk.tiling_problem(65536, 768, 768, 64) is None
  assert "multiple of 256" in rk.tiling_problem(65536, 768, 384, 64)  # both warpgroups' tile_n
  assert "tokens=100" in rk.tiling_problem(100, 768, 768, 64)
  assert "head_dim=48" in rk.tiling_problem(65536, 768, 768, 48)
  assert rk.shared_memory_bytes(rk.DEFAULT_TILES, 64) == 3 * 48 * 1024 + 32 * 1024 + 32 * 1024
  assert "shared memory" in rk.tiling_problem(
    65536, 768, 768, 64, dataclasses.replace(rk.DEFAULT_TILES, stages=4)
  )
  assert "store_slots=0" in rk.tiling_problem(
    65536, 768, 768, 64, dataclasses.replace(rk.DEFAULT_TILES, store_slots=0)
  )
  assert "epi_m=32" in rk.tiling_problem(
    65536, 768, 768, 64, dataclasses.replace(rk.DEFAULT_TILES, epi_m=32)
  )
