"""Preemption: SIGTERM and SIGINT become a request to save and stop, reported by a distinct status.

A run stopped this way saves a checkpoint at the step it reached and raises
:class:`TrainingInterrupted`; the command line exits with :data:`EXIT_INTERRUPTED` (75, EX_TEMPFAIL
of sysexits.h: "temporary failure, try again"), so a scheduler can tell it from success (0) and
from failure (1) and requeue it.  Running the same command again resumes exactly.
"""

from __future__ import annotations

import signal
from typing import Any

import jax
import numpy as np

EXIT_INTERRUPTED = 75  # os.EX_TEMPFAIL; the CLI's status when a signal stopped training

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(RuntimeError):
  """Raised once a signal stopped training and its checkpoint is saved; rerun to resume."""

  def __init__(
    self, message: str, *, step: int, signal_name: str | None, summary: dict | None = None
  ):
    super().__init__(message)
    self.step = step
    self.signal_name = signal_name  # None on a process that another process's signal stopped
    self.summary = summary or {}


class SignalCatcher:
  """Within its context SIGTERM and SIGINT set ``signal_name`` instead of stopping the process.

  A second SIGINT (Ctrl-C twice) raises KeyboardInterrupt at once.  Outside the main thread,
  where Python cannot install handlers, signals are left alone.
  """

  def __init__(self) -> None:
    self.signal_name: str | None = None
    self._previous: dict[int, Any] = {}

  @property
  def requested(self) -> bool:
    """Whether a signal asked the run to stop."""
    return self.signal_name is not None

  def __enter__(self) -> SignalCatcher:
    for signum in SIGNALS:
      try:
        self._previous[signum] = signal.signal(signum, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        break
    return self

  def _handle(self, signum: int, frame: Any) -> None:
    del frame
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    self.signal_name = self.signal_name or signal.Signals(signum).name

  def __exit__(self, *exc: Any) -> None:
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}


def any_process(flag: bool) -> bool:
  """Returns whether ``flag`` is set on any process (a collective: every process must call it)."""
  if jax.process_count() == 1:
    return bool(flag)
  from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

  return bool(np.any(multihost_utils.process_allgather(np.array(bool(flag)))))
