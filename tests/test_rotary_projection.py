"""The q/k projection with the rotation in its epilogue: the Mosaic GPU kernel (interpret mode on
CPU) against a float64 reference and the XLA path; implementation choice; the model with it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hope_jax import encoders, rotary_projection as rp, sharding, train_step

needs_mosaic = pytest.mark.skipif(rp.plgpu is None, reason="this JAX has no Pallas Mosaic GPU")
SMALL = rp.TileConfig(tile_m=64, tile_n=64, tile_k=64, stages=2, epi_m=64, grid_tile_width=2)


def _inputs(m, d, n, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((m, d)).astype(np.float32)
  w = (rng.standard_normal((d, n)) / np.sqrt(d)).astype(np.float32)
  return jnp.asarray(x, jnp.bfloat16), jnp.asarray(w, jnp.bfloat16)


def _reference(x, w, positions, freqs, head_dim):
  """float64 rotate(x @ w), split-half pairs, angles position · θ reduced in float64."""
  y = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
  y = y.reshape(y.shape[0], -1, head_dim)
  angles = np.mod(np.asarray(positions, np.float64)[:, None] * freqs.astype(np.float64), 2 * np.pi)
  cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
  a, b = y[..., :head_dim // 2], y[..., head_dim // 2:]
  return np.concatenate([a * cos - b * sin, b * cos + a * sin], -1).reshape(y.shape[0], -1)


@needs_mosaic
@pytest.mark.parametrize("head_dim, encoder, m, n, tiles", [
    (64, "hope", 128, 256, SMALL),  # 2 × 2 output tiles over the grid of 4
    (32, "rope", 128, 128, dataclasses.replace(SMALL, stages=3, delay_release=1, tile_m=128)),
    (128, "hope", 64, 256, dataclasses.replace(SMALL, tile_n=128)),
    # pingpong: 4 × 3 tiles over 4 CTAs, so both consumers take tiles and the ring wraps
    (64, "hope", 256, 192, dataclasses.replace(SMALL, schedule="pingpong")),
    (32, "rope", 256, 128, dataclasses.replace(SMALL, schedule="pingpong", stages=3, tile_m=128,
                                               store_slots=1)),  # 2 store rounds, 1 slot
])
def test_kernel_matches_float64(head_dim, encoder, m, n, tiles):
  """Forward against float64 at positions up to 10^6, one bf16 rounding of the output."""
  d = 128
  x, w = _inputs(m, d, n)
  positions = np.concatenate([np.arange(m // 2), 1_000_000 + 7 * np.arange(m // 2)])
  positions = positions.astype(np.int32)
  freqs = (encoders.hope_frequencies(head_dim, train_length=64) if encoder == "hope"
           else encoders.rope_frequencies(head_dim))
  angles = encoders.rotation_angles(positions, freqs)
  out = rp.pallas_rotary_matmul(x, w, jnp.cos(angles), jnp.sin(angles), head_dim=head_dim,
                                tiles=tiles)
  assert out.shape == (m, n) and out.dtype == jnp.bfloat16
  expected = _reference(x, w, positions, freqs, head_dim)
  np.testing.assert_allclose(np.asarray(out, np.float64), expected,
                             atol=1e-3, rtol=2 ** -8)


@needs_mosaic
@pytest.mark.parametrize("schedule", rp.SCHEDULES)
def test_fused_gradients_match_the_xla_path(schedule):
  """Value and VJP of projection_impl pallas against xla (HoPE: some bands unrotated)."""
  m, d, n, head_dim = 128, 128, 128, 64
  x, w = _inputs(m, d, n, seed=1)
  freqs = encoders.hope_frequencies(head_dim, train_length=32)
  rotating = tuple(bool(f > 0) for f in freqs)
  assert not all(rotating)
  angles = encoders.rotation_angles(jnp.arange(m) * 3, freqs)
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  cotangent = jnp.asarray(np.random.default_rng(2).standard_normal((m, n)), jnp.bfloat16)
  tiles, results = dataclasses.replace(SMALL, schedule=schedule), {}
  for impl in ("xla", "pallas"):
    f = lambda x, w, impl=impl: rp.rotary_projection(x, w, cos, sin, head_dim=head_dim,
                                                     rotating=rotating, impl=impl, tiles=tiles)
    out, vjp = jax.vjp(f, x, w)
    results[impl] = [np.asarray(a, np.float32) for a in (out, *vjp(cotangent))]
  for fused, xla in zip(results["pallas"], results["xla"]):
    np.testing.assert_allclose(fused, xla, atol=0.05, rtol=2 ** -7)


@needs_mosaic
def test_qkv_projection_gradients_match_the_xla_path():
  """project_qkv (grouped kv heads) against the XLA products and rotations, value and VJP."""
  b, t, d, head_dim = 2, 64, 128, 64
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.standard_normal((b, t, d)), jnp.bfloat16)
  wq, wk, wv = (jnp.asarray(rng.standard_normal((d, h, head_dim)) / np.sqrt(d), jnp.bfloat16)
                for h in (4, 2, 2))
  freqs = encoders.hope_frequencies(head_dim, train_length=32)
  positions = jnp.broadcast_to(jnp.arange(t) * 5, (b, t))
  cos, sin, rotating = encoders.rotation_cos_sin(positions, freqs)
  assert not all(rotating)

  def xla(x, wq, wk, wv):
    rotate = lambda w: encoders.apply_rotary(jnp.einsum("btd,dnh->btnh", x, w), positions, freqs)
    return rotate(wq), rotate(wk), jnp.einsum("btd,dnh->btnh", x, wv)

  def fused(x, wq, wk, wv):
    return rp.project_qkv(x, wq, wk, wv, cos, sin, rotating=rotating, tiles_q=SMALL,
                          tiles_k=SMALL)

  cotangents = tuple(jnp.asarray(rng.standard_normal(o.shape), jnp.bfloat16)
                     for o in xla(x, wq, wk, wv))
  results = {}
  for name, f in (("xla", xla), ("fused", fused)):
    out, vjp = jax.vjp(f, x, wq, wk, wv)
    results[name] = [np.asarray(a, np.float32) for a in (*out, *vjp(cotangents))]
  for got, want in zip(results["fused"], results["xla"], strict=True):
    np.testing.assert_allclose(got, want, atol=0.05, rtol=2 ** -7)


def test_resolve_implementation(monkeypatch):
  kwargs = dict(dtype=jnp.bfloat16, layout="split_half", rotates=True)
  assert rp.resolve_implementation("auto", backend="cpu", **kwargs) == "xla"
  assert rp.resolve_implementation("xla", **kwargs) == "xla"
  assert rp.resolve_implementation("pallas", **{**kwargs, "rotates": False}) == "xla"
  if rp.plgpu is not None:
    assert rp.resolve_implementation("pallas", **kwargs) == "pallas"
  with pytest.raises(ValueError, match="projection_impl='triton'"):
    rp.resolve_implementation("triton", **kwargs)
  with pytest.raises(ValueError, match="layout='interleaved'"):
    rp.resolve_implementation("pallas", **{**kwargs, "layout": "interleaved"})
  with pytest.raises(ValueError, match="dtype=float32"):
    rp.resolve_implementation("pallas", **{**kwargs, "dtype": jnp.float32})
  monkeypatch.setattr(rp, "on_hopper", lambda: False)  # a GPU without WGMMA
  assert rp.resolve_implementation("auto", backend="gpu", **kwargs) == "xla"
  if rp.plgpu is not None:
    with pytest.raises(ValueError, match="needs a Hopper GPU"):
      rp.resolve_implementation("pallas", backend="gpu", **kwargs)
  monkeypatch.setattr(rp, "on_hopper", lambda: True)
  expected = "xla" if rp.plgpu is None else "pallas"
  assert rp.resolve_implementation("auto", backend="gpu", **kwargs) == expected


def test_tiling_choice_and_errors():
  assert rp.choose_tiles(65536, 768, 768, 64) == rp.DEFAULT_TILES
  assert rp.choose_tiles(64, 128, 128, 64).tile_m == 64
  assert rp.choose_tiles(100, 128, 128, 64) is None
  pingpong = dataclasses.replace(rp.DEFAULT_TILES, schedule="pingpong")
  assert rp.tiling_problem(65536, 768, 384, 64, pingpong) is None  # one warpgroup's tile_n
  assert "multiple of 256" in rp.tiling_problem(65536, 768, 384, 64)  # both warpgroups'
  assert rp.shared_memory_bytes(rp.DEFAULT_TILES, 64) == 3 * 48 * 1024 + 32 * 1024 + 32 * 1024
  assert "epi_m=32" in rp.tiling_problem(
      65536, 768, 768, 64, dataclasses.replace(rp.DEFAULT_TILES, epi_m=32))
  assert "shared memory" in rp.tiling_problem(
      65536, 768, 768, 64, dataclasses.replace(rp.DEFAULT_TILES, stages=4))
  assert "schedule='zigzag'" in rp.tiling_problem(
      65536, 768, 768, 64, dataclasses.replace(pingpong, schedule="zigzag"))
  shape = dict(batch=1, length=100, embed=128, heads=2, head_dim=64, heads_axis="heads")
  assert rp.plan("pallas", requested="auto", **shape) is None
  assert rp.plan("xla", requested="xla", **shape) is None
  with pytest.raises(ValueError, match="tokens=100"):
    rp.plan("pallas", requested="pallas", **shape)
  with pytest.raises(ValueError, match="cos/sin must be"):
    rp.rotary_projection(jnp.zeros((64, 128)), jnp.zeros((128, 128)), jnp.zeros((64, 8)),
                         jnp.zeros((64, 8)), head_dim=64, rotating=(True,) * 32)


def test_config_rejects_an_unknown_projection_impl(tiny_config):
  with pytest.raises(ValueError, match="projection_impl='cuda'"):
    tiny_config(projection_impl="cuda")


def _train_step_results(config_for, mesh, tokens):
  """Loss and gradient norm of one SGD step for projection_impl pallas and xla."""
  results = {}
  for impl in ("pallas", "xla"):
    config, optimizer = config_for(impl), optax.sgd(1.0)
    graphdef, state, shardings = train_step.create_train_state(config, optimizer, mesh=mesh)
    step = train_step.make_train_step(graphdef, optimizer, mesh=mesh, state_shardings=shardings)
    _, metrics = step(state, train_step.global_batch({"tokens": tokens}, mesh))
    results[impl] = [float(metrics["loss"]), float(metrics["grad_norm"])]
  return results


@needs_mosaic
def test_train_step_is_the_same_with_the_kernel(tiny_config):
  """A HoPE train step on one device, projection_impl pallas (interpret mode) vs xla."""
  tokens = np.random.default_rng(4).integers(0, 128, (2, 65), dtype=np.int32)  # 128 rows
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1, 1), sharding.MESH_AXES)
  results = _train_step_results(
      lambda impl: tiny_config(num_layers=1, embed_dim=128, num_heads=2, num_kv_heads=2,
                               dtype="bfloat16", encoder="hope", train_length=8,
                               projection_impl=impl), mesh, tokens)
  assert results["pallas"] == pytest.approx(results["xla"], rel=2e-3)


@pytest.mark.parametrize("mesh_shape", [(4, 2, 1), (2, 2, 2)])
def test_sharded_projection_matches_xla(tiny_config, monkeypatch, mesh_shape):
  """The kernel's shard_map wiring on 8 devices (rows split by data and fsdp, heads by tensor).

  The kernel itself is replaced by the XLA product + rotation: Mosaic GPU's interpret mode hung
  intermittently with several devices (a barrier left allocated on device 1).
  """
  monkeypatch.setattr(rp, "_kernel_call", lambda x, w, cos, sin, *, head_dim, tiles:
                      rp.xla_rotary_matmul(x, w, cos, sin, head_dim=head_dim,
                                           rotating=(True,) * (head_dim // 2)))
  tokens = np.random.default_rng(5).integers(0, 128, (8, 65), dtype=np.int32)
  mesh = sharding.make_mesh(sharding.MeshConfig(*mesh_shape))
  results = _train_step_results(
      lambda impl: tiny_config(embed_dim=256, num_heads=4, num_kv_heads=4, dtype="bfloat16",
                               encoder="rope", projection_impl=impl), mesh, tokens)
  assert results["pallas"] == pytest.approx(results["xla"], rel=1e-3)
