"""Sharded training state, jitted train step with gradient accumulation, and an eval function.

Batches are ``{"tokens": int32 [B, T+1]}`` plus optional ``"positions"`` and ``"segment_ids"``
(both [B, T+1], aligned with tokens).  Inputs are ``tokens[:, :-1]``, labels ``tokens[:, 1:]``.

Loss: mean float32 token cross-entropy over the *counted* labels.  With ``segment_ids`` a label
is counted only when it belongs to the same segment as the token predicting it
(``segment_ids[:, 1:] == segment_ids[:, :-1]``): the first token of a packed document cannot be
predicted from the previous document, so that cross-document prediction is excluded.  Padding
should get a segment id of its own; its pad→pad predictions are then counted like any other.
Gradient accumulation sums per-micro-batch loss sums and counts and divides once, so it gives
the same update as one big batch whatever the per-micro-batch counts.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from hope_jax.kernels import token_nll
from hope_jax.model.transformer import Transformer, TransformerConfig
from hope_jax.parallel import sharding

Batch = Mapping[str, jax.Array]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
  """Step counter, parameters, optimizer state and non-parameter model state."""

  step: jax.Array  # int32 scalar
  params: nnx.State  # nnx.Param variables
  opt_state: Any  # optax state; parameter-shaped entries carry the params' logical axes
  model_state: nnx.State  # everything else in the model (empty for Transformer)


def _split(model: Transformer) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
  """Splits a model into (graphdef, params, other state)."""
  # Two filters give exactly two states; nnx.split's stub returns a variadic tuple.
  return cast("tuple[nnx.GraphDef, nnx.State, nnx.State]", nnx.split(model, nnx.Param, ...))


INIT_PLACES = ("device", "host")


def _state_parts(
  model_config: TransformerConfig,
  optimizer: optax.GradientTransformation,
  *,
  mesh: jax.sharding.Mesh,
  rules: Any,
  seed: int,
) -> tuple[nnx.GraphDef, Callable[[], TrainState], TrainState, TrainState]:
  """Returns (graphdef, init, state shapes, state_shardings); init() builds the unsharded state."""
  sharding.check_model_sharding(model_config, mesh, rules)

  def init() -> TrainState:
    _, params, rest = _split(Transformer(model_config, rngs=nnx.Rngs(seed)))
    return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=optimizer.init(params),
      model_state=rest,
    )

  graphdef = _split(nnx.eval_shape(lambda: Transformer(model_config, rngs=nnx.Rngs(seed))))[0]
  shapes = jax.eval_shape(init)
  return graphdef, init, shapes, sharding.named_shardings(shapes, mesh, rules)


def create_train_state(
  model_config: TransformerConfig,
  optimizer: optax.GradientTransformation,
  *,
  mesh: jax.sharding.Mesh,
  rules: Any = sharding.DEFAULT_RULES,
  seed: int = 0,
  init_on: str = "host",
) -> tuple[nnx.GraphDef, TrainState, TrainState]:
  """Returns (graphdef, state, state_shardings) with params and optimizer state sharded.

  ``init_on="host"`` compiles the initialiser for the host CPU and copies each process's shards
  to its devices (it needs the whole state in host memory); ``"device"`` runs it jitted on the
  mesh, so the state is born sharded, but on GPUs that compile is far longer
  (benchmarks/RESULTS.md §1.5).
  """
  if init_on not in INIT_PLACES:
    raise ValueError(f"init_on must be one of {INIT_PLACES}, got {init_on!r}")
  rules = sharding.freeze_rules(rules)
  graphdef, init, _, state_shardings = _state_parts(
    model_config, optimizer, mesh=mesh, rules=rules, seed=seed
  )
  if init_on == "host":
    state = _place(_init_on_host(init), state_shardings)
  else:
    with jax.set_mesh(mesh):
      state = jax.jit(init, out_shardings=state_shardings)()
  return graphdef, state, state_shardings


def abstract_train_state(
  model_config: TransformerConfig,
  optimizer: optax.GradientTransformation,
  *,
  mesh: jax.sharding.Mesh,
  rules: Any = sharding.DEFAULT_RULES,
) -> tuple[nnx.GraphDef, TrainState, TrainState]:
  """Returns (graphdef, state of ShapeDtypeStructs carrying shardings, state_shardings); no compute.

  What a checkpoint restores into, so resuming or evaluating never builds a state to discard.
  """
  graphdef, _, shapes, state_shardings = _state_parts(
    model_config, optimizer, mesh=mesh, rules=sharding.freeze_rules(rules), seed=0
  )
  abstract = jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, state_shardings
  )
  return graphdef, abstract, state_shardings


def _init_on_host(init: Callable[[], Any]) -> Any:
  """Runs init jitted for the host CPU; returns its tree of NumPy arrays."""
  try:
    cpu = jax.local_devices(backend="cpu")[0]  # jax.devices() lists other processes' first
  except RuntimeError as e:
    raise ValueError("init_on='host' needs JAX's CPU backend; add 'cpu' to JAX_PLATFORMS") from e
  with jax.default_device(cpu):
    return jax.tree.map(np.asarray, jax.jit(init)())


def _place(host_tree: Any, shardings: Any) -> Any:
  """Copies a host tree onto its shardings; each process transfers only its own shards."""
  return jax.tree.map(
    lambda x, s: jax.make_array_from_callback(x.shape, s, lambda index: x[index]),
    host_tree,
    shardings,
  )


def global_norm(tree: Any) -> jax.Array:
  """Returns the float32 L2 norm of all leaves of a tree together."""
  squares = [jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)]
  return jnp.sqrt(sum(squares, jnp.zeros((), jnp.float32)))


def _model_inputs(batch: Batch) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
  """Returns (inputs, positions, segment_ids) for the model from a [B, T+1] batch."""
  inputs = sharding.constrain(batch["tokens"][:, :-1], ("batch", "length"))
  positions = batch.get("positions")
  segments = batch.get("segment_ids")
  return (
    inputs,
    None if positions is None else positions[:, :-1],
    None if segments is None else segments[:, :-1],
  )


def _batch_nll(
  graphdef: nnx.GraphDef, params: nnx.State, model_state: nnx.State, batch: Batch
) -> jax.Array:
  """Returns the float32 NLL [B, T] of each next token of a [B, T+1] batch under the model."""
  model = nnx.merge(graphdef, params, model_state)
  inputs, positions, segments = _model_inputs(batch)
  return token_nll(
    model(inputs, positions, segments), batch["tokens"][:, 1:], model.config.loss_impl
  )


def _loss_sums(
  graphdef: nnx.GraphDef, params: nnx.State, model_state: nnx.State, batch: Batch
) -> tuple[jax.Array, jax.Array]:
  """Returns (sum of counted token NLLs, number of counted tokens), both float32."""
  nll = _batch_nll(graphdef, params, model_state, batch)
  segments = batch.get("segment_ids")
  if segments is None:
    weights = jnp.ones_like(nll)
  else:
    weights = (segments[:, 1:] == segments[:, :-1]).astype(jnp.float32)
  return jnp.sum(nll * weights), jnp.sum(weights)


def _micro_batches(batch: Batch, steps: int) -> dict[str, jax.Array]:
  """Reshapes [B, ...] to [steps, B/steps, ...]; micro-batch i takes rows i, i+steps, …"""

  def split(x):
    x = x.reshape(x.shape[0] // steps, steps, *x.shape[1:])
    return jnp.swapaxes(x, 0, 1)

  return {k: split(v) for k, v in batch.items()}


def check_batch(
  batch: Batch, mesh: jax.sharding.Mesh, rules: Any, *, grad_accum_steps: int = 1
) -> None:
  """Raises ValueError naming the field when the batch cannot be split and sharded."""
  rules = sharding.freeze_rules(rules)
  if "tokens" not in batch:
    raise ValueError(f"batch must hold 'tokens', got keys {sorted(batch)}")
  unknown = sorted(set(batch) - {"tokens", "positions", "segment_ids"})
  if unknown:
    raise ValueError(f"unknown batch key(s) {unknown}")
  size, length = batch["tokens"].shape
  if length < 2:
    raise ValueError(f"tokens must be [B, T+1] with T >= 1, got shape {batch['tokens'].shape}")
  for key, value in batch.items():
    if value.shape != (size, length):
      raise ValueError(
        f"batch[{key!r}] must have the tokens' shape {(size, length)}, got {value.shape}"
      )
  if size % grad_accum_steps:
    raise ValueError(f"batch_size={size} is not divisible by grad_accum_steps={grad_accum_steps}")
  field = (
    "batch_size"
    if grad_accum_steps == 1
    else (f"micro-batch size (batch_size={size} / grad_accum_steps={grad_accum_steps})")
  )
  sharding.check_batch(size // grad_accum_steps, mesh, rules, field=field)


def make_train_step(
  graphdef: nnx.GraphDef,
  optimizer: optax.GradientTransformation,
  *,
  mesh: jax.sharding.Mesh,
  state_shardings: TrainState,
  rules: Any = sharding.DEFAULT_RULES,
  grad_accum_steps: int = 1,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict]]:
  """Returns step(state, batch) -> (state, {"loss", "grad_norm", "tokens", "finite"}), jitted.

  grad_norm is the global norm of the averaged gradient before the optimizer (which clips).
  "finite" is False when the loss or grad_norm is NaN or Inf; such a step advances ``step`` but
  does not apply its update, so the state stays finite.  The state argument is donated.
  """
  rules = sharding.freeze_rules(rules)
  if (
    isinstance(grad_accum_steps, bool)
    or int(grad_accum_steps) != grad_accum_steps
    or (grad_accum_steps < 1)
  ):
    raise ValueError(
      f"grad_accum_steps must be a positive integer, got grad_accum_steps={grad_accum_steps!r}"
    )
  steps = int(grad_accum_steps)
  grad_fn = jax.value_and_grad(lambda p, s, b: _loss_sums(graphdef, p, s, b), has_aux=True)
  param_shardings = state_shardings.params

  def accumulate(params: nnx.State, model_state: nnx.State, batch: Batch):
    if steps == 1:
      (loss_sum, count), grads = grad_fn(params, model_state, batch)
      return loss_sum, count, grads

    def body(carry, micro):
      loss_sum, count, grads = carry
      (loss, n), g = grad_fn(params, model_state, micro)
      grads = jax.tree.map(jnp.add, grads, g)
      grads = jax.lax.with_sharding_constraint(grads, param_shardings)
      return (loss_sum + loss, count + n, grads), None

    zeros = jax.tree.map(jnp.zeros_like, params)
    init = (jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32), zeros)
    (loss_sum, count, grads), _ = jax.lax.scan(body, init, _micro_batches(batch, steps))
    return loss_sum, count, grads

  def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
    with nnx.logical_axis_rules(rules):
      loss_sum, count, grads = accumulate(state.params, state.model_state, batch)
    denominator = jnp.maximum(count, 1.0)
    grads = jax.tree.map(lambda g: g / denominator, grads)
    grads = jax.lax.with_sharding_constraint(grads, param_shardings)
    loss, grad_norm = loss_sum / denominator, global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    # A non-finite step leaves params and optimizer state as they were (a select, no host sync).
    keep_if_bad = lambda new, old: jnp.where(finite, new, old)
    new_state = dataclasses.replace(
      state,
      step=state.step + 1,
      params=jax.tree.map(keep_if_bad, params, state.params),
      opt_state=jax.tree.map(keep_if_bad, opt_state, state.opt_state),
    )
    metrics = {"loss": loss, "grad_norm": grad_norm, "tokens": count, "finite": finite}
    return new_state, metrics

  batch_sharding = NamedSharding(mesh, sharding.logical_spec(("batch", None), rules))
  replicated = NamedSharding(mesh, PartitionSpec())
  jitted = jax.jit(
    step,
    in_shardings=(state_shardings, batch_sharding),
    out_shardings=(state_shardings, replicated),
    donate_argnums=(0,),
  )

  def run(state: TrainState, batch: Batch) -> tuple[TrainState, dict]:
    check_batch(batch, mesh, rules, grad_accum_steps=steps)
    with jax.set_mesh(mesh):
      return jitted(state, dict(batch))

  return run


def make_eval_fn(
  graphdef: nnx.GraphDef,
  *,
  mesh: jax.sharding.Mesh,
  rules: Any = sharding.DEFAULT_RULES,
  model_state: nnx.State | None = None,
) -> Callable[..., jax.Array]:
  """Returns fn(params, tokens [B, T], positions=None, segment_ids=None) -> float32 NLL [B, T-1].

  NLL[:, t] is −log p(tokens[:, t+1] | tokens[:, :t+1]); positions/segment_ids are [B, T].
  Inputs are the global batch (NumPy, the same on every process, or global jax.Arrays); B must
  divide into the mesh's batch shards.  The NLL comes back replicated, so every process can
  read it with jax.device_get.
  """
  rules = sharding.freeze_rules(rules)
  model_state = nnx.State({}) if model_state is None else model_state
  batch_sharding = NamedSharding(mesh, sharding.logical_spec(("batch", None), rules))

  @functools.partial(jax.jit, out_shardings=NamedSharding(mesh, PartitionSpec()))
  def evaluate(params, batch):
    with nnx.logical_axis_rules(rules):
      return _batch_nll(graphdef, params, model_state, batch)

  def fn(params: nnx.State, tokens, positions=None, segment_ids=None) -> jax.Array:
    batch = {"tokens": tokens, "positions": positions, "segment_ids": segment_ids}
    batch = {k: jnp.asarray(v, jnp.int32) for k, v in batch.items() if v is not None}
    check_batch(batch, mesh, rules)
    batch = jax.device_put(batch, batch_sharding)
    with jax.set_mesh(mesh):
      return evaluate(params, batch)

  return fn


def global_batch(
  local_batch: Mapping[str, np.ndarray],
  mesh: jax.sharding.Mesh,
  rules: Any = sharding.DEFAULT_RULES,
) -> dict[str, jax.Array]:
  """Assembles each process's rows into global arrays sharded along the batch axis."""
  rules = sharding.freeze_rules(rules)
  batch_sharding = NamedSharding(mesh, sharding.logical_spec(("batch",), rules))
  out = {}
  for key, value in local_batch.items():
    value = np.asarray(value)
    sharding.check_batch(
      value.shape[0] * jax.process_count(),
      mesh,
      rules,
      field=f"global batch of {key!r} ({value.shape[0]} rows × {jax.process_count()} processes)",
    )
    out[key] = jax.make_array_from_process_local_data(batch_sharding, value)
  return out
