"""Checkpoints through orbax: asynchronous, atomic saves of the train state; resume onto any mesh."""

from __future__ import annotations

import os
from typing import Any

import orbax.checkpoint as ocp
from etils import epath


class Checkpointer:
  """Saves the train state under WORKDIR/checkpoints/<step>, keeps the last K, restores the latest.

  Orbax writes each step to a temporary directory and renames it when complete, so a save that is
  killed never corrupts an earlier checkpoint; ``latest_step`` only sees finished ones.
  """

  def __init__(self, workdir: str, *, keep: int = 2, async_save: bool = True):
    if "://" not in str(workdir):  # orbax wants absolute paths; gs:// and friends already are
      workdir = os.path.abspath(workdir)
    self.directory = epath.Path(workdir) / "checkpoints"
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=async_save)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    """Returns the newest finished checkpoint's step, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Returns every finished checkpoint's step."""
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, *, metadata: dict | None = None,
           force: bool = True) -> bool:
    """Starts saving ``state`` (returns at once when asynchronous); returns whether it saves."""
    args = {"state": ocp.args.StandardSave(state)}
    if metadata is not None:
      args["metadata"] = ocp.args.JsonSave(metadata)
    return self._manager.save(int(step), args=ocp.args.Composite(**args), force=force)

  def restore(self, abstract_state: Any, *, step: int | None = None) -> tuple[int, Any]:
    """Restores onto the shardings of ``abstract_state`` (ShapeDtypeStructs); any mesh works."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    restored = self._manager.restore(
        int(step), args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state)))
    return int(step), restored.state

  def metadata(self, step: int | None = None) -> dict | None:
    """Returns the JSON metadata saved with a step, if any."""
    step = self.latest_step() if step is None else step
    if step is None:
      return None
    try:
      restored = self._manager.restore(
          int(step), args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))
    except (FileNotFoundError, KeyError, ValueError):
      return None
    return restored.metadata

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are finished."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self._manager.wait_until_finished()
    self._manager.close()

