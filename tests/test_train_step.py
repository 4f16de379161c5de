"""Tests of the train step: every encoder learns, gradient accumulation, segment loss, eval fn."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from device_helpers import cpu_mesh, on_cpu
from flax import nnx
from jax.sharding import PartitionSpec

from hope_jax.model import Transformer, TransformerConfig
from hope_jax.parallel import sharding
from hope_jax.training import step as train_step

ENCODERS = ["rope", "hope", "nope", "p_rope", "partial_rope", "alibi", "kerple"]
RULES = sharding.DEFAULT_RULES


def _mesh(data: int = 1, fsdp: int = 1, tensor: int = 1) -> jax.sharding.Mesh:
  return cpu_mesh(data, fsdp, tensor)


def _batch(batch: int, length: int, *, seed: int = 0, segments: bool = False) -> dict:
  rng = np.random.default_rng(seed)
  out = {"tokens": rng.integers(0, 128, (batch, length + 1), dtype=np.int32)}
  if segments:
    cuts = rng.integers(1, length, (batch, 2))
    pos = np.arange(length + 1)
    out["segment_ids"] = (pos >= cuts[:, :1]).astype(np.int32) + (pos >= cuts[:, 1:]).astype(
      np.int32
    )
  return out


@pytest.fixture(scope="module")
def adam_state():
  """A 1-layer rope TrainState for Adam on one device; encoders without parameters share it."""
  config = on_cpu(
    TransformerConfig(
      vocab_size=128,
      num_layers=1,
      embed_dim=64,
      num_heads=4,
      num_kv_heads=2,
      mlp_dim=128,
      dtype="float32",
      train_length=32,
    )
  )
  _, state, shardings = train_step.create_train_state(
    config, optax.adam(1e-2), mesh=_mesh(), rules=RULES, seed=0
  )
  return config, state, shardings


@pytest.mark.parametrize("encoder", ENCODERS)
def test_every_encoder_trains(adam_state, encoder):
  mesh, optimizer = _mesh(), optax.adam(1e-2)
  config = dataclasses.replace(adam_state[0], encoder=encoder)
  if encoder == "kerple":  # KERPLE has parameters of its own
    graphdef, state, shardings = train_step.create_train_state(
      config, optimizer, mesh=mesh, rules=RULES, seed=0
    )
  else:
    graphdef = nnx.graphdef(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0))))
    state, shardings = jax.tree.map(jnp.copy, adam_state[1]), adam_state[2]
  step = train_step.make_train_step(
    graphdef, optimizer, mesh=mesh, state_shardings=shardings, rules=RULES
  )
  batch = train_step.global_batch(_batch(4, 16), mesh, RULES)
  losses = []
  for _ in range(6):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
  assert int(state.step) == 6 and float(metrics["tokens"]) == 4 * 16
  assert np.isfinite(losses).all() and losses[-1] < losses[0] - 0.3, losses


@pytest.fixture(scope="module")
def sgd_run():
  """A rope TrainState for SGD(lr=1) on a data=2 mesh, and a cache of its step functions."""
  config = on_cpu(
    TransformerConfig(
      vocab_size=128,
      num_layers=2,
      embed_dim=64,
      num_heads=4,
      num_kv_heads=2,
      mlp_dim=128,
      dtype="float32",
      train_length=32,
    )
  )
  mesh = _mesh(2)
  graphdef, state, shardings = train_step.create_train_state(
    config, optax.sgd(1.0), mesh=mesh, rules=RULES, seed=0
  )
  return config, mesh, graphdef, state, shardings, {}


def _one_step(run, batch, *, grad_accum_steps=1):
  """Returns (metrics, params after one SGD(lr=1) step) as NumPy, leaving run's state intact."""
  _, mesh, graphdef, state, shardings, steps = run
  if grad_accum_steps not in steps:
    steps[grad_accum_steps] = train_step.make_train_step(
      graphdef,
      optax.sgd(1.0),
      mesh=mesh,
      state_shardings=shardings,
      rules=RULES,
      grad_accum_steps=grad_accum_steps,
    )
  state = jax.tree.map(jnp.copy, state)  # the step donates its input
  state, metrics = steps[grad_accum_steps](state, train_step.global_batch(batch, mesh, RULES))
  return {k: float(v) for k, v in metrics.items()}, jax.tree.map(np.asarray, state.params)


def test_gradient_accumulation_equals_big_batch(sgd_run):
  batch = _batch(8, 16, segments=True)
  before = jax.tree.map(np.asarray, sgd_run[3].params)
  big, big_params = _one_step(sgd_run, batch)
  accumulated, acc_params = _one_step(sgd_run, batch, grad_accum_steps=2)
  assert accumulated == pytest.approx(big, rel=1e-5)
  for a, b, p in zip(
    jax.tree.leaves(acc_params), jax.tree.leaves(big_params), jax.tree.leaves(before)
  ):
    np.testing.assert_allclose(a - p, b - p, rtol=1e-4, atol=1e-7)  # the SGD updates = −grads
  assert (
    max(
      float(np.abs(b - p).max())
      for b, p in zip(jax.tree.leaves(big_params), jax.tree.leaves(before))
    )
    > 1e-4
  )
  with pytest.raises(ValueError, match="grad_accum_steps=3"):
    _one_step(sgd_run, batch, grad_accum_steps=3)


def test_segment_loss_skips_cross_document_labels_and_matches_eval(sgd_run):
  config, mesh, graphdef, state, _, _ = sgd_run
  batch = _batch(8, 16, seed=1, segments=True)
  metrics, _ = _one_step(sgd_run, batch)
  seg = batch["segment_ids"]
  same = seg[:, 1:] == seg[:, :-1]
  assert metrics["tokens"] == same.sum() < seg[:, 1:].size
  evaluate = train_step.make_eval_fn(graphdef, mesh=mesh, rules=RULES)
  nll = np.asarray(evaluate(state.params, batch["tokens"], segment_ids=seg))
  assert nll.shape == (8, 16) and nll.dtype == np.float32
  assert metrics["loss"] == pytest.approx(nll[same].mean(), rel=1e-5)
  assert metrics["loss"] != pytest.approx(nll.mean(), rel=1e-5)


def test_global_batch_shards_rows_over_data_and_fsdp():
  mesh = _mesh(2, 2, 2)
  local = _batch(8, 4)
  global_ = train_step.global_batch(local, mesh, RULES)
  assert global_["tokens"].sharding.spec == PartitionSpec(("data", "fsdp"))
  assert global_["tokens"].addressable_shards[0].data.shape == (2, 5)
  np.testing.assert_array_equal(global_["tokens"], local["tokens"])
  with pytest.raises(ValueError, match="global batch of 'tokens'"):
    train_step.global_batch(_batch(6, 4), mesh, RULES)


def test_train_step_rejects_malformed_batches(sgd_run):
  _, mesh, graphdef, state, shardings, _ = sgd_run
  step = train_step.make_train_step(
    graphdef, optax.sgd(1.0), mesh=mesh, state_shardings=shardings, rules=RULES
  )
  with pytest.raises(ValueError, match="batch_size=3"):
    step(state, _batch(3, 8))
  with pytest.raises(ValueError, match="'labels'"):
    step(state, {**_batch(2, 8), "labels": np.zeros((2, 9), np.int32)})
  with pytest.raises(ValueError, match="segment_ids"):
    step(state, {**_batch(2, 8), "segment_ids": np.zeros((2, 4), np.int32)})
  with pytest.raises(ValueError, match="grad_accum_steps=0"):
    train_step.make_train_step(
      graphdef, optax.sgd(1.0), mesh=mesh, state_shardings=shardings, grad_accum_steps=0
    )
  assert dataclasses.is_dataclass(state) and int(state.step) == 0


@pytest.mark.parametrize("dtype, tol", [(jnp.float32, 1e-5), (jnp.bfloat16, 1e-2)])
def test_token_nll_and_its_gradient_match_float64(dtype, tol):
  rng = np.random.default_rng(0)
  logits = jnp.asarray(4 * rng.standard_normal((2, 5, 37)), dtype)
  labels = jnp.asarray(rng.integers(0, 37, (2, 5)), jnp.int32)
  g = rng.standard_normal((2, 5))
  nll, vjp = jax.vjp(lambda x: train_step.token_nll(x, labels), logits)
  (grad,) = vjp(jnp.asarray(g, jnp.float32))
  assert nll.dtype == jnp.float32 and grad.dtype == dtype
  x = np.asarray(jnp.asarray(logits, jnp.float32), np.float64)  # the input values exactly
  log_probs = (
    x
    - np.log(np.sum(np.exp(x - x.max(-1, keepdims=True)), -1, keepdims=True))
    - x.max(-1, keepdims=True)
  )
  one_hot = np.eye(37)[np.asarray(labels)]
  np.testing.assert_allclose(nll, -np.sum(log_probs * one_hot, -1), rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(
    np.asarray(jnp.asarray(grad, jnp.float32)),
    (np.exp(log_probs) - one_hot) * g[..., None],
    rtol=tol,
    atol=tol,
  )
  # Huge logits neither overflow nor lose the answer.
  big = train_step.token_nll(jnp.asarray([[1e4, 0.0, -1e4]], jnp.float32), jnp.asarray([1]))
  np.testing.assert_allclose(big, [1e4], rtol=1e-6)
