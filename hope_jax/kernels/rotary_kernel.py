"""The Hopper (sm_90) Mosaic GPU kernel behind ``rotary_projection``: rotate(x @ w) in one pass.

``pallas_rotary_matmul(x, w, cos, sin)`` returns ``rotate(x @ w)``: x [M, d] (tokens × model
width), w [d, heads · head_dim], cos/sin float32 [M, head_dim / 2] (one angle per token and band),
split-half pairs (channel i with i + head_dim / 2).  The forward rotation happens in registers on
the float32 accumulator before the one store, so it moves no bytes besides cos/sin.

The kernel follows JAX's ``pallas/ops/gpu/hopper_matmul_mgpu.py`` (warp-specialised TMA + WGMMA
pipeline, two consumer warpgroups side by side along N; Apache 2.0, The JAX Authors); its
epilogue rotates each head's two halves from the accumulator and stores them, and each tile's
cos/sin rows are copied in while its product runs.  Hopper only (WGMMA); on the CPU it runs in
Mosaic GPU's interpret mode, which is how the tests check it — interpret mode does not check
what the GPU's layout inference accepts (benchmarks/RESULTS.md §2.3), so the kernel tests also
run natively with ``JAX_PLATFORMS=cuda``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, cast

import jax
import jax.numpy as jnp

try:
  from jax.experimental import pallas as pl
  from jax.experimental.pallas import mosaic_gpu as plgpu
except ImportError:  # pragma: no cover
  pl = plgpu = cast(Any, None)  # callers check `plgpu is not None` first


@dataclasses.dataclass(frozen=True)
class TileConfig:
  """Kernel tiling: the two consumer warpgroups work side by side on one tile_m × 2·tile_n tile.

  Each owns a tile_m × tile_n half; product then epilogue run in lockstep (the tensor cores idle
  during the epilogue, benchmarks/RESULTS.md §2.3).
  """

  tile_m: int = 128
  tile_n: int = 128
  tile_k: int = 64
  stages: int = 3  # TMA pipeline depth (4 overflows shared memory at 128 × 128, cooperative)
  epi_m: int = 64  # rows per epilogue round (a multiple of 64: WGMMA accumulator rows)
  store_slots: int = 1  # epilogue rounds whose stores may be in flight (2 overflows at 64 rows)
  grid_tile_width: int = 4  # planar-snake band width (L2 reuse; 4 was fastest, RESULTS.md §2.3)
  minor_n: bool = True  # walk N fastest (consecutive tiles share x's rows and cos/sin)
  delay_release: int = 0  # WGMMAs left in flight per step (no gain measured: RESULTS.md §5)

  @property
  def cta_tile_n(self) -> int:
    """Output columns one CTA covers per tile step: both warpgroups'."""
    return 2 * self.tile_n


DEFAULT_TILES = TileConfig()


def _interpret_params():
  """Mosaic GPU interpret-mode parameters (public in JAX 0.11, private in 0.10)."""
  params = getattr(plgpu, "InterpretGPUParams", None)
  if params is None:
    from jax._src.pallas.mosaic_gpu.interpret.params import InterpretGPUParams as params
  return params()


def on_hopper() -> bool:
  """Whether the default device is a compute-capability 9.x GPU (WGMMA)."""
  device = jax.devices()[0]
  return device.platform == "gpu" and str(getattr(device, "compute_capability", "")).startswith("9")


def tiling_problem(
  m: int, d: int, n: int, head_dim: int, tiles: TileConfig = DEFAULT_TILES
) -> str | None:
  """Returns why (m, d) @ (d, n) with this head_dim cannot use these tiles, or None when it can."""
  if head_dim not in (32, 64, 128):
    return f"head_dim={head_dim} (needs 32, 64 or 128)"
  if tiles.tile_n % head_dim:
    return f"tile_n={tiles.tile_n} is not a multiple of head_dim={head_dim}"
  if n % tiles.cta_tile_n:
    return f"heads × head_dim={n} is not a multiple of {tiles.cta_tile_n}"
  if tiles.store_slots < 1:
    return f"store_slots={tiles.store_slots} (needs at least 1)"
  if tiles.epi_m % 64 or tiles.tile_m % tiles.epi_m:
    return f"epi_m={tiles.epi_m} does not split tile_m={tiles.tile_m} into multiples of 64"
  if m % tiles.tile_m:
    return f"tokens={m} is not a multiple of tile_m={tiles.tile_m}"
  if d % tiles.tile_k:
    return f"embed_dim={d} is not a multiple of tile_k={tiles.tile_k}"
  if (need := shared_memory_bytes(tiles, head_dim)) > _SHARED_MEMORY_BYTES:
    return f"{tiles} needs {need} bytes of shared memory, more than {_SHARED_MEMORY_BYTES}"
  return None


_SHARED_MEMORY_BYTES = 227 * 1024 - 1024  # an H100's per-block limit, less room for the barriers


def shared_memory_bytes(tiles: TileConfig, head_dim: int, itemsize: int = 2) -> int:
  """Shared memory of the kernel's buffers: TMA ring, cos/sin (float32), epilogue stores."""
  ring = tiles.stages * (tiles.tile_m * tiles.tile_k + tiles.tile_k * tiles.cta_tile_n) * itemsize
  cos_sin = 2 * tiles.tile_m * (head_dim // 2) * 4  # one buffer: both warpgroups' rows
  stores = 2 * tiles.store_slots * tiles.epi_m * tiles.tile_n * itemsize
  return ring + cos_sin + stores


def _transforms(minor: int, dtype) -> tuple:
  """Tiling and swizzle transforms for a shared-memory tile whose rows hold ``minor`` elements."""
  swizzle = plgpu.find_swizzle(minor * jnp.dtype(dtype).itemsize * 8)
  return (
    plgpu.TilingTransform((8, swizzle // jnp.dtype(dtype).itemsize)),
    plgpu.SwizzleTransform(swizzle),
  )


def _store_rotated(acc, cs_smem, out_smem, out_tile, *, epi_m: int, head_dim: int) -> None:
  """Rotates a float32 accumulator tile by its rows' cos/sin and stores it, epi_m rows a round.

  cs_smem [2, tile_m, half] holds the tile's cos and sin; out_smem [slots, pieces, epi_m, half]
  holds ``slots`` rounds of stores, each one piece per half head (pieces = 2 · heads in the
  tile); out_tile is the tile's window of the output.  A round's pieces are written, fenced once
  and stored as one group; a slot is reused once its stores of ``slots`` rounds ago have read it.
  """
  half = head_dim // 2
  tile_m, tile_n = acc.shape
  slots = out_smem.shape[0]
  plgpu.wait_smem_to_gmem(0, wait_read_only=True)  # the last tile's stores: a product ago
  for r in range(tile_m // epi_m):
    slot, m_sl = r % slots, slice(r * epi_m, (r + 1) * epi_m)
    if r >= slots:
      plgpu.wait_smem_to_gmem(slots - 1, wait_read_only=True)
    cos, sin = cs_smem[0, m_sl], cs_smem[1, m_sl]
    for head in range(tile_n // head_dim):
      lo = acc[m_sl, head * head_dim : head * head_dim + half]
      hi = acc[m_sl, head * head_dim + half : (head + 1) * head_dim]
      out_smem[slot, 2 * head] = (lo * cos - hi * sin).astype(out_smem.dtype)
      out_smem[slot, 2 * head + 1] = (hi * cos + lo * sin).astype(out_smem.dtype)
    plgpu.commit_smem()
    pieces = 2 * (tile_n // head_dim)
    for piece in range(pieces):  # piece p holds columns [p · half, (p + 1) · half)
      plgpu.copy_smem_to_gmem(
        out_smem.at[slot, piece],
        out_tile.at[m_sl, pl.ds(piece * half, half)],
        commit_group=piece == pieces - 1,
      )


def _kernel(x_gmem, w_gmem, cs_gmem, out_gmem, *, tiles: TileConfig, head_dim: int):
  """One CTA: a persistent loop over output tiles, each pipelined WGMMAs and a rotating epilogue."""
  m, k = x_gmem.shape
  n = w_gmem.shape[1]
  tile_m, tile_n, tile_k, cta_tile_n = tiles.tile_m, tiles.tile_n, tiles.tile_k, tiles.cta_tile_n
  half = head_dim // 2
  m_iters, n_iters, k_iters = m // tile_m, n // cta_tile_n, k // tile_k
  in_transforms = _transforms(tile_k, x_gmem.dtype)

  def get_pipeline(body, compute_context):
    return plgpu.emit_pipeline_warp_specialized(
      body,
      grid=(k_iters,),
      memory_registers=40,
      in_specs=[
        plgpu.BlockSpec(
          (tile_m, tile_k),
          lambda kk: (0, kk),
          transforms=in_transforms,
          memory_space=plgpu.SMEM,
          delay_release=tiles.delay_release,
        ),
        plgpu.BlockSpec(
          (tile_k, cta_tile_n),
          lambda kk: (kk, 0),
          transforms=in_transforms,
          memory_space=plgpu.SMEM,
          delay_release=tiles.delay_release,
        ),
      ],
      wg_axis="wg",
      num_compute_wgs=2,
      max_concurrent_steps=tiles.stages,
      compute_context=compute_context,
    )

  ignore = lambda *_, **__: None

  @functools.partial(
    pl.run_scoped,
    pipeline_allocs=get_pipeline(ignore, ignore).get_allocations(x_gmem, w_gmem),
    # Each consumer warpgroup's store slots: one piece per half head and epilogue round.
    out_smem=plgpu.SMEM(
      (2, tiles.store_slots, 2 * tiles.tile_n // head_dim, tiles.epi_m, half),
      out_gmem.dtype,
      transforms=_transforms(half, out_gmem.dtype),
    ),
    # The tile's cos and sin, both warpgroups' rows, and the barriers of its reuse.
    cs_smem=plgpu.SMEM((2, tile_m, half), jnp.float32, transforms=_transforms(half, jnp.float32)),
    cs_loaded=plgpu.Barrier(),
    cs_consumed=plgpu.Barrier(num_arrivals=2),
    collective_axes="wg",
  )
  def _scope(pipeline_allocs, out_smem, cs_smem, cs_loaded, cs_consumed):
    wg = jax.lax.axis_index("wg")

    @plgpu.nd_loop((m_iters * n_iters,), collective_axes="cluster_grid")
    def _tile_loop(info):
      (lin,) = info.index
      m_idx, n_idx = plgpu.planar_snake(
        lin, (m_iters, n_iters), int(tiles.minor_n), tiles.grid_tile_width
      )  # minor dimension: 1 = N, 0 = M
      rows = pl.ds(m_idx * tile_m, tile_m)
      cols = pl.ds(n_idx * cta_tile_n + wg * tile_n, tile_n)

      def compute_context(eval_pipeline):
        @pl.when(wg == 0)
        def _load_cos_sin():  # once both have read the last tile's; it lands during the product
          @pl.when(info.local_index > 0)
          def _():
            plgpu.barrier_wait(cs_consumed)

          plgpu.copy_gmem_to_smem(cs_gmem.at[:, rows], cs_smem, cs_loaded)

        @functools.partial(pl.run_scoped, acc_ref=plgpu.ACC((tile_m, tile_n), jnp.float32))
        def _acc_scope(acc_ref):
          eval_pipeline(acc_ref)
          plgpu.barrier_wait(cs_loaded)
          _store_rotated(
            acc_ref[...],
            cs_smem,
            out_smem.at[wg],
            out_gmem.at[rows, cols],
            epi_m=tiles.epi_m,
            head_dim=head_dim,
          )
          plgpu.barrier_arrive(cs_consumed)

      def mma_body(_, x_smem, w_smem, acc_ref):
        plgpu.wgmma(acc_ref, x_smem, w_smem.at[:, pl.ds(wg * tile_n, tile_n)])
        plgpu.wgmma_wait(tiles.delay_release)
        return acc_ref

      get_pipeline(mma_body, compute_context)(
        x_gmem.at[rows, :],
        w_gmem.at[:, pl.ds(n_idx * cta_tile_n, cta_tile_n)],
        allocations=pipeline_allocs,
      )

    @pl.when((wg == 0) & (jax.lax.axis_index("cluster_grid") < m_iters * n_iters))
    def _drain():  # the last tile's release: every phase of a barrier is waited on
      plgpu.barrier_wait(cs_consumed)

  plgpu.wait_smem_to_gmem(0, wait_read_only=True)


def pallas_rotary_matmul(
  x: jax.Array,
  w: jax.Array,
  cos: jax.Array,
  sin: jax.Array,
  *,
  head_dim: int,
  tiles: TileConfig = DEFAULT_TILES,
) -> jax.Array:
  """Returns rotate(x @ w) [M, N] in x's dtype from the Mosaic GPU kernel (no autodiff rule)."""
  m, d = x.shape
  n = w.shape[1]
  problem = tiling_problem(m, d, n, head_dim, tiles)
  if problem:
    raise ValueError(f"projection_impl='pallas' cannot tile this projection: {problem}")
  if on_hopper():  # one CTA per streaming multiprocessor (132 on an H100 SXM)
    interpret, grid = None, jax.devices()[0].core_count
  elif jax.default_backend() == "cpu":
    interpret, grid = _interpret_params(), 4
  else:
    raise ValueError(
      f"projection_impl='pallas' needs a Hopper GPU (WGMMA) or the CPU (interpret "
      f"mode), got {jax.devices()[0].device_kind}"
    )
  cs = jnp.stack([cos, sin]).astype(jnp.float32)  # [2, M, half]: one copy per output tile
  call = plgpu.kernel(
    functools.partial(_kernel, tiles=tiles, head_dim=head_dim),
    out_type=jax.ShapeDtypeStruct((m, n), x.dtype),
    grid=(grid,),
    grid_names=("cluster_grid",),
    num_threads=3,
    thread_name="wg",
    compiler_params=plgpu.CompilerParams(lowering_semantics=plgpu.LoweringSemantics.Warpgroup),
    interpret=interpret,
  )
  return call(x, w.astype(x.dtype), cs)
