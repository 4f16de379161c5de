"""The package's imports flow one way: no cycles, and no layer imports a layer above or beside it.

Parsed with ``ast`` (nothing is imported), every ``import`` counts: module level, inside functions
and under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "hope_jax"

# Sub-package (or top-level module) -> layer.  A module imports its own sub-package and layers
# strictly below its own; two sub-packages of one layer are independent of each other.
LAYERS: dict[str, int] = {
  "_durations": 0,  # how progress lines write a duration (data, training, evaluation)
  "_mappings": 0,
  "_version": 0,
  "positional": 1,  # what users import into their own models
  "parallel": 1,  # meshes and sharding rules; knows no model
  "kernels": 2,  # every Pallas/Mosaic kernel, behind one entry point per operation
  "model": 3,
  "data": 3,
  "training": 4,
  "evaluation": 5,
  "config": 6,  # the ConfigDict format, resolved into the typed configs above
  "interop": 7,  # Hugging Face checkpoints in and out (runs written as the config layer does)
  "cli": 8,
  "__main__": 9,
}
ROOT_MAY_IMPORT = {
  "positional",
  "_version",
}  # hope_jax/__init__.py re-exports the positional core only


def module_name(path: Path) -> str:
  """hope_jax/model/attention.py -> hope_jax.model.attention (packages by their __init__)."""
  parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
  """Every module of the package by dotted name."""
  return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path, modules: dict[str, Path]) -> set[str]:
  """The package's modules that the file at path imports (``from pkg import mod`` as pkg.mod)."""
  name = module_name(path)
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found: set[str] = set()
  for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join(anchor + ([base] if base else []))
      for alias in node.names:
        found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
  return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
  """module -> the package modules it imports."""
  modules = all_modules()
  return {name: imported_modules(path, modules) for name, path in modules.items()}


def layer_of(module: str) -> str | None:
  """The sub-package (layer key) a module belongs to; None for the package root."""
  parts = module.split(".")
  return parts[1] if len(parts) > 1 else None


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
  """Returns one import cycle as a list of modules, or None."""
  state: dict[str, int] = {}
  stack: list[str] = []

  def visit(node: str) -> list[str] | None:
    state[node] = 1
    stack.append(node)
    for nxt in sorted(edges[node]):
      if state.get(nxt) == 1:
        return stack[stack.index(nxt) :] + [nxt]
      if nxt not in state:
        cycle = visit(nxt)
        if cycle:
          return cycle
    stack.pop()
    state[node] = 2
    return None

  for node in sorted(edges):
    if node not in state:
      cycle = visit(node)
      if cycle:
        return cycle
  return None


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
  """Each import that reaches into a layer above or beside the importer's, as 'a -> b'."""
  bad = []
  for source, targets in edges.items():
    source_layer = layer_of(source)
    for target in sorted(targets):
      target_layer = layer_of(target)
      if source_layer is None:
        ok = target_layer in ROOT_MAY_IMPORT
      elif target_layer is None:
        ok = False  # the root re-exports for users; inside the package import the layer itself
      else:
        ok = target_layer == source_layer or LAYERS[target_layer] < LAYERS[source_layer]
      if not ok:
        bad.append(f"{source} -> {target}")
  return bad


def test_every_subpackage_has_a_layer():
  unknown = {layer_of(m) for m in all_modules()} - set(LAYERS) - {None}
  assert not unknown, f"add these sub-packages to LAYERS: {sorted(unknown)}"


def test_no_import_cycles():
  cycle = find_cycle(graph())
  assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_respect_layers():
  assert layer_violations(graph()) == []


def test_positional_core_imports_nothing_else_of_the_package():
  edges = graph()
  outside = {
    f"{s} -> {t}"
    for s, ts in edges.items()
    if layer_of(s) == "positional"
    for t in ts
    if layer_of(t) != "positional"
  }
  assert not outside


@pytest.mark.parametrize(
  "edges, expected",
  [
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
    ({"a": {"b"}, "b": set()}, None),
  ],
)
def test_find_cycle_finds_a_planted_cycle(edges, expected):
  assert find_cycle(edges) == expected


def test_layer_violations_flag_upward_and_sideways_imports():
  edges = {
    "hope_jax.model.x": {"hope_jax.training.y", "hope_jax.data.z", "hope_jax.kernels.k"},
    "hope_jax.training.y": set(),
    "hope_jax.data.z": set(),
    "hope_jax.kernels.k": set(),
  }
  assert layer_violations(edges) == [
    "hope_jax.model.x -> hope_jax.data.z",
    "hope_jax.model.x -> hope_jax.training.y",
  ]


def test_no_module_is_over_400_lines():
  long = {
    name: n
    for name, path in all_modules().items()
    if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400
  }
  assert not long, f"split these modules: {long}"
