"""What the Pallas GPU kernels share: implementation choice, config checks, a sharded train step."""

import jax
import numpy as np
import optax
import pytest
from device_helpers import cpu_mesh, kernel_mesh
from flax import nnx

from hope_jax import kernels
from hope_jax.kernels import _triton as pallas_gpu
from hope_jax.parallel import sharding
from hope_jax.training import step as train_step

needs_pallas = pytest.mark.skipif(
  pallas_gpu.plgpu is None, reason="this JAX has no Pallas Triton backend"
)
FIELDS = ["norm_impl", "loss_impl"]


@pytest.mark.parametrize("field", FIELDS)
def test_selector_rule(field):
  pick = lambda requested, **kw: kernels.select(  # noqa: E731
    field, requested, **{"feature_sharded": False, **kw}
  )
  assert pick("auto", backend="cpu") == "xla"
  assert pick("auto", backend="gpu") == ("xla" if pallas_gpu.plgpu is None else "pallas")
  assert pick("auto", backend="gpu", feature_sharded=True) == "xla"
  assert pick("pallas", backend="cpu") == "pallas"
  with pytest.raises(ValueError, match=f"{field}='fused'"):
    pick("fused")


@pytest.mark.parametrize("axis", ["act_embed", "vocab"])
def test_an_axis_counts_as_sharded_only_across_several_devices(axis):
  """A feature axis mapped to a mesh axis of size 1 is whole (the kernel runs); of size 2 not."""
  rules = tuple(
    (name, "tensor" if name == axis else target) for name, target in sharding.DEFAULT_RULES
  )
  axes = ("batch", "length", axis)
  for shape, shards in (((4, 2, 1), 1), ((2, 2, 2), 2)):
    with jax.set_mesh(cpu_mesh(*shape)), nnx.logical_axis_rules(rules):  # nothing runs on it
      assert pallas_gpu.feature_shards(axes) == shards


@pytest.mark.parametrize("field", ["norm_impl", "loss_impl"])
def test_config_rejects_an_unknown_implementation(tiny_config, field):
  with pytest.raises(ValueError, match=f"{field}='triton'"):
    tiny_config(**{field: "triton"})


def test_block_rows_and_padding():
  assert [pallas_gpu.block_rows(n, 8) for n in (64, 12, 7)] == [8, 4, 1]
  assert [pallas_gpu.padded(n) for n in (1, 48, 64, 3000)] == [1, 64, 64, 4096]


@needs_pallas
@pytest.mark.parametrize("field, mesh_shape", [("norm_impl", (2, 2, 2)), ("loss_impl", (2, 4, 1))])
def test_sharded_train_step_is_the_same_with_the_pallas_kernel(tiny_config, field, mesh_shape):
  """Loss and gradient norm of a train step on 8 devices, Pallas (interpret mode on CPU) vs XLA.

  The loss kernel needs an unsharded vocabulary, so its mesh has no tensor axis.
  """
  tokens = np.random.default_rng(4).integers(0, 128, (8, 17), dtype=np.int32)
  mesh = kernel_mesh(*mesh_shape)
  results = {}
  for impl in ("pallas", "xla"):
    config, optimizer = tiny_config(**{field: impl}), optax.sgd(1.0)
    graphdef, state, shardings = train_step.create_train_state(config, optimizer, mesh=mesh)
    step = train_step.make_train_step(graphdef, optimizer, mesh=mesh, state_shardings=shardings)
    _, metrics = step(state, train_step.global_batch({"tokens": tokens}, mesh))
    results[impl] = [float(metrics["loss"]), float(metrics["grad_norm"])]
  assert results["pallas"] == pytest.approx(results["xla"], rel=1e-5)
