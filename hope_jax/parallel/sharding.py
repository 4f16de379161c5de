"""Device meshes, logical-axis sharding rules and sharded model creation.

A mesh has three axes — ``data`` (pure data parallelism), ``fsdp`` (data parallelism with
parameters sharded along ``embed``) and ``tensor`` (Megatron-style heads/mlp/vocab sharding).  Every
parameter carries logical axis names (``out_sharding`` metadata of its ``nnx.Param``); ``rules``
map them to mesh axes.  All mesh axes are ``AxisType.Auto``: XLA's partitioner inserts the
collectives, and activations get ``with_sharding_constraint`` hints through :func:`constrain`.
Configurations that cannot be sharded fail here, before anything is compiled.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from flax.core import spmd as core_spmd
from jax.sharding import NamedSharding, PartitionSpec

from hope_jax import _mappings as mappings

MESH_AXES: tuple[str, ...] = ("data", "fsdp", "tensor")
Rules = tuple[tuple[str, Any], ...]

DEFAULT_RULES: Rules = (
  ("batch", ("data", "fsdp")),
  ("embed", "fsdp"),
  ("vocab", "tensor"),
  ("heads", "tensor"),
  ("kv_heads", "tensor"),
  ("mlp", "tensor"),
  ("head_dim", None),
  ("length", None),
  ("act_embed", None),
)

# Which TransformerConfig field sizes each logical parameter axis (for error messages).
AXIS_FIELDS: dict[str, str] = {
  "embed": "embed_dim",
  "vocab": "vocab_size",
  "heads": "num_heads",
  "kv_heads": "num_kv_heads",
  "mlp": "mlp_dim",
  "head_dim": "head_dim",
}


LOGICAL_AXES: tuple[str, ...] = tuple(name for name, _ in DEFAULT_RULES)


def freeze_rules(rules: Any) -> Rules:
  """Returns rules as a hashable tuple of (logical, mesh axes) pairs covering every logical axis.

  Logical axes the rules leave out are replicated (mapped to None); unknown logical names and
  unknown mesh axes raise ValueError naming them.
  """
  items = rules.items() if isinstance(rules, Mapping) else rules
  table: dict[str, Any] = {}
  for item in items:
    logical, target = item
    if logical not in LOGICAL_AXES:
      raise ValueError(f"rules name an unknown logical axis {logical!r}; known: {LOGICAL_AXES}")
    target = tuple(target) if isinstance(target, list) else target
    flat = target if isinstance(target, tuple) else (target,)
    bad = [a for a in flat if a is not None and a not in MESH_AXES]
    if bad:
      raise ValueError(f"rules[{logical!r}] must name mesh axes from {MESH_AXES}, got {target!r}")
    table[str(logical)] = target
  return tuple((name, table.get(name)) for name in LOGICAL_AXES)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Mesh axis sizes (−1 fills the remaining devices; at most one −1) and logical-axis rules."""

  data: int = 1
  fsdp: int = -1
  tensor: int = 1
  rules: Rules = DEFAULT_RULES

  def __post_init__(self):
    """Validates sizes and freezes the rules."""
    for name in MESH_AXES:
      value = getattr(self, name)
      if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or (value != -1 and value < 1)
      ):
        raise ValueError(f"mesh axis {name} must be a positive integer or -1, got {name}={value!r}")
    fills = [n for n in MESH_AXES if getattr(self, n) == -1]
    if len(fills) > 1:
      given = ", ".join(f"{n}=-1" for n in fills)
      raise ValueError(f"at most one mesh axis may be -1, got {given}")
    object.__setattr__(self, "rules", freeze_rules(self.rules))

  @classmethod
  def from_mapping(cls, mapping: Any) -> MeshConfig:
    """Builds a MeshConfig from a dict or ConfigDict; unknown keys raise ValueError naming them."""
    return mappings.dataclass_from_mapping(cls, mapping)

  def shape(self, num_devices: int) -> tuple[int, ...]:
    """Returns the (data, fsdp, tensor) sizes for num_devices, or raises naming the bad field."""
    sizes = {n: getattr(self, n) for n in MESH_AXES}
    fixed = math.prod(v for v in sizes.values() if v != -1)
    for name, value in sizes.items():
      if value != -1 and num_devices % value:
        raise ValueError(f"mesh axis {name}={value} does not divide the device count {num_devices}")
    if num_devices % fixed:
      raise ValueError(
        f"mesh axes {sizes} multiply to {fixed}, which does not divide the device "
        f"count {num_devices}"
      )
    fill = num_devices // fixed
    shape = tuple(fill if v == -1 else v for v in sizes.values())
    if math.prod(shape) != num_devices:
      raise ValueError(
        f"mesh axes {sizes} use {math.prod(shape)} devices, but there are "
        f"{num_devices}; set one axis to -1 or make the sizes multiply to "
        f"{num_devices}"
      )
    return shape


def make_mesh(mesh_config: MeshConfig, devices: Sequence[Any] | None = None) -> jax.sharding.Mesh:
  """Returns a (data, fsdp, tensor) mesh with Auto axes over devices (default: all devices)."""
  devices = list(jax.devices() if devices is None else devices)
  shape = mesh_config.shape(len(devices))
  axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
  return jax.make_mesh(shape, MESH_AXES, axis_types=axis_types, devices=devices)


# ----------------------------------------------------------------------------------------------
# Logical axes.


def current_rules() -> Rules:
  """Returns the logical-axis rules of the enclosing ``nnx.logical_axis_rules`` context."""
  return tuple(core_spmd.get_logical_axis_rules())


def _flat(target: Any) -> tuple[str, ...]:
  """Returns a rule target (None, an axis or a tuple of axes) as a tuple of mesh axes."""
  return tuple(a for a in (target if isinstance(target, tuple) else (target,)) if a is not None)


def logical_spec(
  axes: Sequence[str | None], rules: Any = None, *, dedupe: bool = False
) -> PartitionSpec:
  """Maps logical axis names to a PartitionSpec with rules (default: the context's).

  With dedupe, a mesh axis already taken by an earlier dimension is dropped from later ones
  (activations: the batch keeps fsdp even if a rule maps, say, mlp to it too).
  """
  table = dict(current_rules() if rules is None else freeze_rules(rules))
  used: set[str] = set()
  dims = []
  for axis in axes:
    target = table.get(axis) if axis is not None else None
    if dedupe:
      kept = tuple(a for a in _flat(target) if a not in used)
      used.update(kept)
      target = None if not kept else kept[0] if len(kept) == 1 else kept
    dims.append(target)
  return PartitionSpec(*dims)


def _context() -> tuple[Rules, Any] | None:
  """Returns (rules, abstract mesh) of the enclosing mesh + rules context, or None outside one."""
  rules = current_rules()
  mesh = jax.sharding.get_abstract_mesh()
  return None if not rules or mesh.empty else (rules, mesh)


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
  """Adds a sharding constraint from logical axes; a no-op outside a mesh + rules context."""
  context = _context()
  if context is None:
    return x
  return jax.lax.with_sharding_constraint(x, logical_spec(axes, context[0], dedupe=True))


def _is_axes(tree: Any) -> bool:
  """True for one array's logical axes: a tuple of axis names or None."""
  return isinstance(tree, tuple) and all(a is None or isinstance(a, str) for a in tree)


def map_shards(fn: Callable, *, in_axes: Any, out_axes: Any) -> Callable:
  """Returns fn ``jax.shard_map``ped over the context mesh, specs from logical axes; else fn.

  in_axes: one tuple of logical axis names per argument; out_axes: the same for the outputs
  (a tuple of them for several).  Outside a mesh + rules context fn runs on whole arrays.
  """
  context = _context()
  if context is None:
    return fn
  rules, mesh = context
  spec = lambda axes: logical_spec(axes, rules, dedupe=True)
  specs = lambda tree: jax.tree.map(spec, tree, is_leaf=_is_axes)
  return jax.shard_map(
    fn, mesh=mesh, in_specs=specs(tuple(in_axes)), out_specs=specs(out_axes), check_vma=False
  )


def dimension_shards(axes: Sequence[str | None], index: int) -> int:
  """Returns how many shards dimension ``index`` of an activation with these logical axes has.

  Counted on the context mesh with the context rules (dedupe as for activations); 1 outside a
  mesh + rules context.
  """
  context = _context()
  if context is None:
    return 1
  rules, mesh = context
  return mesh_axis_size(mesh, logical_spec(axes, rules, dedupe=True)[index])


def mesh_axis_size(mesh: jax.sharding.Mesh, target: Any) -> int:
  """Returns how many devices a rule's target (None, an axis or a tuple of axes) spans."""
  return math.prod(mesh.shape[a] for a in _flat(target))


def batch_divisor(mesh: jax.sharding.Mesh, rules: Any) -> int:
  """Returns the number of shards the batch axis is split into."""
  return mesh_axis_size(mesh, dict(freeze_rules(rules)).get("batch"))


def check_batch(
  batch_size: int, mesh: jax.sharding.Mesh, rules: Any, *, field: str = "batch_size"
) -> None:
  """Raises ValueError naming the field when batch_size is not divisible by the batch shards."""
  shards = batch_divisor(mesh, rules)
  if batch_size % shards:
    target = dict(freeze_rules(rules)).get("batch")
    raise ValueError(
      f"{field}={batch_size} is not divisible by the {shards} batch shards of mesh "
      f"axes {target!r} (mesh {dict(mesh.shape)})"
    )


def check_model_sharding(config: Any, mesh: jax.sharding.Mesh, rules: Any) -> None:
  """Raises ValueError naming the field of config (a TransformerConfig) whose size a rule's mesh
  axes do not divide."""
  table = dict(freeze_rules(rules))
  for logical, field in AXIS_FIELDS.items():
    shards = mesh_axis_size(mesh, table.get(logical))
    value = getattr(config, field)
    if value % shards:
      raise ValueError(
        f"{field}={value} is not divisible by the {shards} shards of mesh axes "
        f"{table.get(logical)!r} that rule {logical!r} maps it to"
      )


def param_specs(state: Any, rules: Any) -> Any:
  """Returns the PartitionSpec tree of an nnx.State (or any tree holding nnx Variables).

  Raises ValueError naming the parameter when the rules put one mesh axis on two of its dims.
  """
  with nnx.logical_axis_rules(freeze_rules(rules)):
    specs = nnx.get_partition_spec(state)
  is_spec = lambda x: isinstance(x, PartitionSpec)  # noqa: E731
  for path, spec in jax.tree_util.tree_flatten_with_path(specs, is_leaf=is_spec)[0]:
    axes = [a for dim in spec for a in _flat(dim)]
    if len(axes) != len(set(axes)):
      raise ValueError(
        f"rules shard parameter {jax.tree_util.keystr(path)} as {spec}, which "
        f"uses a mesh axis twice"
      )
  return specs


def named_shardings(state: Any, mesh: jax.sharding.Mesh, rules: Any) -> Any:
  """Returns the NamedSharding tree of an nnx.State (or any tree holding nnx Variables)."""
  specs = param_specs(state, rules)
  return jax.tree.map(
    lambda spec: NamedSharding(mesh, spec), specs, is_leaf=lambda x: isinstance(x, PartitionSpec)
  )
