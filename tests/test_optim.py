"""Tests of the optimizer: schedule shape, decay mask and clipping."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from hope_jax.training import optim
from hope_jax.training.config import OptimizerConfig


def make_config(**fields):
  return OptimizerConfig(
    **{**dict(steps=100, warmup_steps=10, learning_rate=1e-3, min_lr_ratio=0.1), **fields}
  )


def test_schedule_warms_up_then_decays_to_the_floor():
  schedule = optim.learning_rate_schedule(make_config())
  assert float(schedule(0)) == 0.0
  assert float(schedule(10)) == pytest.approx(1e-3)
  assert float(schedule(5)) == pytest.approx(5e-4)
  assert float(schedule(100)) == pytest.approx(1e-4)
  values = [float(schedule(s)) for s in range(10, 101)]
  assert all(a >= b for a, b in zip(values, values[1:]))


def test_weight_decay_skips_vectors():
  config = make_config(weight_decay=0.5, clip_norm=0.0)
  params = {"w": jnp.ones((3, 3)), "norm": {"scale": jnp.ones(3)}, "bias": jnp.ones(3)}
  tx = optim.make_optimizer(config)
  state = tx.init(params)
  zeros = {"w": jnp.zeros((3, 3)), "norm": {"scale": jnp.zeros(3)}, "bias": jnp.zeros(3)}
  for _ in range(11):  # past warmup, so the learning rate is non-zero
    updates, state = tx.update(zeros, state, params)
  assert np.all(np.asarray(updates["w"]) < 0)  # decayed towards zero
  np.testing.assert_array_equal(updates["norm"]["scale"], 0.0)
  np.testing.assert_array_equal(updates["bias"], 0.0)


def test_clipping_bounds_the_update():
  config = make_config(clip_norm=1.0, weight_decay=0.0)
  tx = optim.make_optimizer(config)
  params = {"w": jnp.zeros((4, 4))}
  huge = {"w": jnp.full((4, 4), 1e6)}
  clipped, _ = optax.clip_by_global_norm(1.0).update(huge, optax.EmptyState())
  assert float(optax.global_norm(clipped)) == pytest.approx(1.0, rel=1e-5)
  updates, _ = tx.update(huge, tx.init(params), params)
  assert np.all(np.isfinite(np.asarray(updates["w"])))


def test_warmup_is_capped_at_the_run_length():
  config = make_config(steps=5, warmup_steps=2000)
  schedule = optim.learning_rate_schedule(config)
  assert float(schedule(5)) == pytest.approx(1e-3)
