"""Checkpoints through orbax: asynchronous, atomic, verified saves of the train state; any mesh.

Every save records a checksum of each array of the state in the checkpoint's metadata and refuses
a state holding NaN or Inf (:class:`NonFiniteStateError`).  Every restore recomputes the checksums;
a checkpoint that cannot be read or does not match is reported in a line (:class:`CheckpointError`)
and, when no step was asked for, the next older one is used instead.
"""

from __future__ import annotations

import gc
import os
import re
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath


class CheckpointError(RuntimeError):
  """Raised when a checkpoint cannot be read or does not match the checksums saved with it."""


class NonFiniteStateError(ValueError):
  """Raised when asked to save a state that holds NaN or Inf."""


_GOLDEN = np.uint32(0x9E3779B1)


def _leaf_checksum(x: jax.Array) -> jax.Array:
  """Returns a uint32 checksum of an array's bits and their positions, the same on any sharding.

  Integer sums wrap and are associative, so the reduction order (and hence the mesh) does not
  change the result; mixing in each element's index makes swapped elements count too.
  """
  if x.dtype == jnp.bool_:
    bits = x.astype(jnp.uint32)
  elif x.dtype.itemsize == 8:
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)  # [..., 2]
  else:
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[x.dtype.itemsize]
    bits = jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)
  index = jnp.zeros(bits.shape, jnp.uint32)
  for axis in range(bits.ndim):
    index = index * np.uint32(bits.shape[axis]) + jax.lax.broadcasted_iota(
      jnp.uint32, bits.shape, axis
    )
  h = (bits ^ (index * _GOLDEN)) * np.uint32(0x85EBCA77) + np.uint32(0x27D4EB2F)
  h = (h ^ (h >> 15)) * np.uint32(0x2C1B3C6D)
  h = h ^ (h >> 13)
  return jnp.sum(h, dtype=jnp.uint32)


@jax.jit
def _fingerprint(leaves: list[jax.Array]) -> tuple[jax.Array, jax.Array]:
  """Returns (uint32 checksum per leaf, bool all-finite per leaf); integer leaves count as finite."""
  checksums = jnp.stack([_leaf_checksum(x) for x in leaves])
  finite = jnp.stack(
    [
      jnp.all(jnp.isfinite(x)) if jnp.issubdtype(x.dtype, jnp.inexact) else jnp.bool_(True)
      for x in leaves
    ]
  )
  return checksums, finite


def fingerprint(state: Any) -> tuple[dict[str, int], list[str]]:
  """Returns ({leaf path: checksum}, paths of leaves holding NaN or Inf) of a state, on device."""
  flat = jax.tree_util.tree_flatten_with_path(state)[0]
  if not flat:
    return {}, []
  checksums, finite = jax.device_get(_fingerprint([leaf for _, leaf in flat]))
  paths = [jax.tree_util.keystr(path) for path, _ in flat]
  return (
    {p: int(c) for p, c in zip(paths, checksums)},
    [p for p, ok in zip(paths, finite) if not ok],
  )


def _short(paths: list[str], limit: int = 3) -> str:
  """Returns up to ``limit`` names and how many more there are."""
  more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
  return ", ".join(paths[:limit]) + more


def _reason(error: BaseException) -> str:
  """Returns a one-line summary of an orbax/TensorStore error: its root cause's first line."""
  seen = {id(error)}
  while len(seen) < 20:
    parent = error.__cause__ or error.__context__
    if parent is None:
      break
    error = parent
    if id(error) in seen:
      break
    seen.add(id(error))
  text = f"{type(error).__name__}: {str(error).strip()}"
  first = text.splitlines()[0] if text.strip() else type(error).__name__
  first = re.sub(r"\s*\[tensorstore_spec.*", "", first)
  first = re.sub(r"\. See full TensorStore details.*", "", first)
  return first if len(first) <= 240 else first[:237] + "..."


def _without_closed_loop_noise(hook: Callable[[Any], None]) -> Callable[[Any], None]:
  """Wraps sys.unraisablehook to drop the "Event loop is closed" tracebacks of a failed read."""

  def quiet(unraisable: Any) -> None:
    error = unraisable.exc_value
    if not (isinstance(error, RuntimeError) and "Event loop is closed" in str(error)):
      hook(unraisable)

  return quiet


class Checkpointer:
  """Saves the train state under WORKDIR/checkpoints/<step>, keeps the last K, restores the latest.

  Orbax writes each step to a temporary directory and renames it when complete, so a save that is
  killed never corrupts an earlier checkpoint; ``latest_step`` only sees finished ones.
  """

  def __init__(self, workdir: str, *, keep: int = 2, async_save: bool = True):
    if "://" not in str(workdir):  # orbax wants absolute paths; gs:// and friends already are
      workdir = os.path.abspath(workdir)
    self.directory = epath.Path(workdir) / "checkpoints"
    self.rejected: dict[int, str] = {}  # steps a restore found unusable, with the reason
    options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=async_save
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    """Returns the newest finished checkpoint's step, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Returns every finished checkpoint's step."""
    return list(self._manager.all_steps())

  def save(
    self, step: int, state: Any, *, metadata: dict | None = None, force: bool = True
  ) -> bool:
    """Starts saving ``state`` with its checksums (returns at once when asynchronous).

    Raises NonFiniteStateError, saving nothing, when any array of the state holds NaN or Inf.
    """
    checksums, non_finite = fingerprint(state)
    if non_finite:
      raise NonFiniteStateError(f"refusing to save step {step}: NaN or Inf in {_short(non_finite)}")
    metadata = {**(metadata or {}), "step": int(step), "checksums": checksums}
    args = {"state": ocp.args.StandardSave(state), "metadata": ocp.args.JsonSave(metadata)}
    return self._manager.save(int(step), args=ocp.args.Composite(**args), force=force)

  def restore(self, abstract_state: Any, *, step: int | None = None) -> tuple[int, Any]:
    """Restores onto the shardings of ``abstract_state`` (ShapeDtypeStructs); any mesh works.

    With ``step=None`` the newest checkpoint that reads back and matches its checksums is used;
    each one skipped is logged as a warning and kept in ``rejected``.  Raises FileNotFoundError
    when there is no checkpoint, CheckpointError when the asked one (or every one) is unusable.
    """
    if step is not None:
      return int(step), self._restore_verified(int(step), abstract_state)
    steps = sorted(self.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    for candidate in steps:
      try:
        state = self._restore_verified(candidate, abstract_state)
      except CheckpointError as e:
        self.rejected[candidate] = str(e)
        logging.warning("%s", e)
        continue
      if self.rejected:
        logging.warning(
          "using checkpoint %d instead of %s", candidate, ", ".join(map(str, sorted(self.rejected)))
        )
      return candidate, state
    raise CheckpointError(
      f"no usable checkpoint in {self.directory}: " + "; ".join(self.rejected[s] for s in steps)
    )

  def _restore_verified(self, step: int, abstract_state: Any) -> Any:
    """Restores one step and checks it against its checksums; raises CheckpointError if not."""
    where = self.directory / str(step)
    if step not in self.all_steps():
      raise CheckpointError(f"checkpoint {step}: no finished checkpoint at {where}")
    metadata = self.metadata(step)
    if metadata is None:
      raise CheckpointError(
        f"checkpoint {step}: its metadata ({where / 'metadata'}) is missing "
        "or unreadable, so it cannot be verified"
      )
    previous_hook = sys.unraisablehook
    sys.unraisablehook = _without_closed_loop_noise(previous_hook)
    try:
      restored = self._manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
      )
    except Exception as e:  # orbax and TensorStore raise many types; all mean "unreadable"
      gc.collect()  # a failed read leaves callbacks to a closed event loop: drop them here
      raise CheckpointError(
        f"checkpoint {step} at {where / 'state'} cannot be read: {_reason(e)}"
      ) from None
    finally:
      sys.unraisablehook = previous_hook
    state = restored.state
    checksums, non_finite = fingerprint(state)
    if non_finite:
      raise CheckpointError(
        f"checkpoint {step} at {where} holds NaN or Inf in {_short(non_finite)}"
      )
    saved = metadata.get("checksums")
    if saved is not None:  # checkpoints written before checksums existed are accepted unverified
      wrong = [p for p in checksums if saved.get(p) != checksums[p]]
      wrong += [p for p in saved if p not in checksums]
      if wrong:
        raise CheckpointError(
          f"checkpoint {step} at {where / 'state'} does not match the "
          f"checksums saved with it (changed on disk?): {_short(wrong)}"
        )
    return state

  def set_aside(self, steps: list[int]) -> list[str]:
    """Moves the given checkpoints to WORKDIR/rejected_checkpoints/ so new saves can reuse the steps.

    Every process must call it (process 0 moves them).  Returns the paths they were moved to.
    """
    moved = []
    target_root = self.directory.parent / "rejected_checkpoints"
    for step in sorted(steps):
      source = self.directory / str(step)
      target, n = target_root / str(step), 1
      while target.exists():
        target, n = target_root / f"{step}.{n}", n + 1
      if jax.process_index() == 0 and source.exists():
        target_root.mkdir(parents=True, exist_ok=True)
        source.rename(target)
      moved.append(str(target))
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

      multihost_utils.sync_global_devices("hope_jax checkpoints set aside")
    self._manager.reload()
    return moved

  def metadata(self, step: int | None = None) -> dict | None:
    """Returns the JSON metadata saved with a step, if any."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    try:
      restored = self._manager.restore(
        int(step), args=ocp.args.Composite(metadata=ocp.args.JsonRestore())
      )
    except Exception:  # pylint: disable=broad-except  # missing or corrupt: no metadata
      return None
    return restored.metadata if isinstance(restored.metadata, dict) else None

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are finished."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()
