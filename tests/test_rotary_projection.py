"""The q/k projection with its rotation: the kernel's autodiff and project_qkv against the XLA
path (interpret mode on the CPU), the entry point, the implementation choice and tiling, the
model with it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from device_helpers import cpu_mesh, on_cpu
from rotary_helpers import SMALL, bf16_inputs, needs_mosaic

from hope_jax import kernels
from hope_jax.kernels import projection as rp
from hope_jax.kernels import rotary_kernel
from hope_jax.parallel import sharding
from hope_jax.positional import encoders
from hope_jax.training import step as train_step


@needs_mosaic
def test_fused_gradients_match_the_xla_path():
  """Value and VJP of rotary_matmul pallas against xla (HoPE: some bands unrotated)."""
  m, d, n, head_dim = 128, 128, 128, 64
  x, w = bf16_inputs(m, d, n, seed=1)
  freqs = encoders.hope_frequencies(head_dim, train_length=32)
  rotating = tuple(bool(f > 0) for f in freqs)
  assert not all(rotating)
  angles = encoders.rotation_angles(jnp.arange(m) * 3, freqs)
  cos, sin = jnp.cos(angles), jnp.sin(angles)
  cotangent = jnp.asarray(np.random.default_rng(2).standard_normal((m, n)), jnp.bfloat16)
  results = {}
  for impl in ("xla", "pallas"):
    f = lambda x, w, impl=impl: rp.rotary_matmul(
      x, w, cos, sin, head_dim=head_dim, rotating=rotating, impl=impl, tiles=SMALL
    )
    out, vjp = jax.vjp(f, x, w)
    results[impl] = [np.asarray(a, np.float32) for a in (out, *vjp(cotangent))]
  for fused, xla in zip(results["pallas"], results["xla"]):
    np.testing.assert_allclose(fused, xla, atol=0.05, rtol=2**-7)


def qkv_inputs(b: int, t: int, d: int, head_dim: int, *, heads: tuple[int, int, int], seed: int):
  """bf16 x [b, t, d] and q, k, v weights [d, heads, head_dim] of a seeded generator."""
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((b, t, d)), jnp.bfloat16)
  return (
    x,
    *(jnp.asarray(rng.standard_normal((d, h, head_dim)) / np.sqrt(d), jnp.bfloat16) for h in heads),
  )


@needs_mosaic
def test_qkv_projection_gradients_match_the_xla_path():
  """project_qkv (grouped kv heads) against the XLA products and rotations, value and VJP."""
  b, t, d, head_dim = 2, 32, 128, 64
  x, wq, wk, wv = qkv_inputs(b, t, d, head_dim, heads=(4, 2, 2), seed=3)
  freqs = encoders.hope_frequencies(head_dim, train_length=32)
  positions = jnp.broadcast_to(jnp.arange(t) * 5, (b, t))
  cos, sin, rotating = encoders.rotation_cos_sin(positions, freqs)
  assert not all(rotating)

  def xla(x, wq, wk, wv):
    rotate = lambda w: encoders.apply_rotary(jnp.einsum("btd,dnh->btnh", x, w), positions, freqs)
    return rotate(wq), rotate(wk), jnp.einsum("btd,dnh->btnh", x, wv)

  def fused(x, wq, wk, wv):
    return rp.project_qkv(x, wq, wk, wv, cos, sin, rotating=rotating, tiles_q=SMALL, tiles_k=SMALL)

  rng = np.random.default_rng(4)
  cotangents = tuple(
    jnp.asarray(rng.standard_normal(o.shape), jnp.bfloat16) for o in xla(x, wq, wk, wv)
  )
  results = {}
  for name, f in (("xla", xla), ("fused", fused)):
    out, vjp = jax.vjp(f, x, wq, wk, wv)
    results[name] = [np.asarray(a, np.float32) for a in (*out, *vjp(cotangents))]
  for got, want in zip(results["fused"], results["xla"], strict=True):
    np.testing.assert_allclose(got, want, atol=0.05, rtol=2**-7)


def test_selector_rule(monkeypatch):
  facts = dict(dtype=jnp.bfloat16, layout="split_half", rotates=True, tiling_problem=None)
  pick = lambda requested, **kw: kernels.select(
    "projection_impl",
    requested,  # noqa: E731
    **{**facts, **kw},
  )
  assert pick("auto", backend="cpu") == "xla"
  assert pick("xla") == "xla"
  assert pick("pallas", rotates=False) == "xla"
  if rotary_kernel.plgpu is not None:
    assert pick("pallas") == "pallas"
  with pytest.raises(ValueError, match="projection_impl='triton'"):
    pick("triton")
  with pytest.raises(ValueError, match="layout='interleaved'"):
    pick("pallas", layout="interleaved")
  with pytest.raises(ValueError, match="dtype=float32"):
    pick("pallas", dtype=jnp.float32)
  with pytest.raises(ValueError, match="cannot tile this projection: tokens=100"):
    pick("pallas", tiling_problem="tokens=100 is not a multiple of tile_m=64")
  monkeypatch.setattr(rotary_kernel, "on_hopper", lambda: False)  # a GPU without WGMMA
  assert pick("auto", backend="gpu") == "xla"
  if rotary_kernel.plgpu is not None:
    with pytest.raises(ValueError, match="needs a Hopper GPU"):
      pick("pallas", backend="gpu")
  monkeypatch.setattr(rotary_kernel, "on_hopper", lambda: True)
  expected = "xla" if rotary_kernel.plgpu is None else "pallas"
  assert pick("auto", backend="gpu") == expected
  assert pick("auto", backend="gpu", tiling_problem="tokens=100") == "xla"


def test_tiling_choice_and_errors():
  assert rp.choose_tiles(65536, 768, 768, 64) == rp.DEFAULT_TILES
  assert rp.choose_tiles(64, 128, 128, 64).tile_m == 64
  assert rp.choose_tiles(100, 128, 128, 64) is None
  shape = dict(batch=1, length=100, embed=128, heads=2, head_dim=64, heads_axis="heads")
  tiles, problem = rp.plan(**shape)
  assert tiles is None and "tokens=100" in problem
  assert rp.plan(**{**shape, "length": 128}) == (rp.choose_tiles(128, 128, 128, 64), None)
  x = jnp.zeros((1, 100, 128), jnp.bfloat16)
  wq = jnp.zeros((128, 2, 64), jnp.bfloat16)
  with pytest.raises(ValueError, match="tokens=100"):
    rp.rotary_projection(
      x,
      wq,
      wq,
      wq,
      jnp.zeros((1, 100), jnp.int32),
      encoders.rope_frequencies(64),
      implementation="pallas",
    )
  with pytest.raises(ValueError, match="cos/sin must be"):
    rp.rotary_matmul(
      jnp.zeros((64, 128)),
      jnp.zeros((128, 128)),
      jnp.zeros((64, 8)),
      jnp.zeros((64, 8)),
      head_dim=64,
      rotating=(True,) * 32,
    )


@needs_mosaic
def test_entry_point_matches_the_xla_path():
  """kernels.rotary_projection, pallas against xla: it computes its cos/sin from positions."""
  b, t, d, head_dim = 1, 64, 128, 64
  x, wq, wk, wv = qkv_inputs(b, t, d, head_dim, heads=(2, 2, 2), seed=6)
  positions = 3 + jnp.broadcast_to(jnp.arange(t), (b, t))
  freqs = encoders.hope_frequencies(head_dim, train_length=32)
  results = [
    kernels.rotary_projection(x, wq, wk, wv, positions, freqs, implementation=impl)
    for impl in ("pallas", "xla")
  ]
  for got, want in zip(*results, strict=True):
    np.testing.assert_allclose(
      np.asarray(got, np.float32), np.asarray(want, np.float32), atol=0.05, rtol=2**-7
    )


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
    lambda impl: tiny_config(
      num_layers=1,
      embed_dim=128,
      num_heads=2,
      num_kv_heads=2,
      dtype="bfloat16",
      encoder="hope",
      train_length=8,
      projection_impl=impl,
    ),
    mesh,
    tokens,
  )
  assert results["pallas"] == pytest.approx(results["xla"], rel=2e-3)


@pytest.mark.parametrize("mesh_shape", [(4, 2, 1), (2, 2, 2)])
def test_sharded_projection_matches_xla(tiny_config, monkeypatch, mesh_shape):
  """The kernel's shard_map wiring on 8 devices (rows split by data and fsdp, heads by tensor).

  The kernel itself is replaced by the XLA product + rotation: Mosaic GPU's interpret mode hung
  intermittently with several devices (a barrier left allocated on device 1).  So it is XLA only:
  CPU devices, and the other implementations "xla" as "auto" picks them there.
  """
  monkeypatch.setattr(
    rp,
    "_kernel_call",
    lambda x, w, cos, sin, *, head_dim, tiles: rp.xla_rotary_matmul(
      x, w, cos, sin, head_dim=head_dim, rotating=(True,) * (head_dim // 2)
    ),
  )
  tokens = np.random.default_rng(5).integers(0, 128, (8, 65), dtype=np.int32)
  mesh = cpu_mesh(*mesh_shape)
  results = _train_step_results(
    lambda impl: dataclasses.replace(
      on_cpu(
        tiny_config(embed_dim=256, num_heads=4, num_kv_heads=4, dtype="bfloat16", encoder="rope")
      ),
      projection_impl=impl,
    ),
    mesh,
    tokens,
  )
  assert results["pallas"] == pytest.approx(results["xla"], rel=1e-3)
