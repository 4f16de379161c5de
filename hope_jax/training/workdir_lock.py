"""An advisory lock on a run's workdir, so two training processes never write one run."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

LOCK_FILE = ".lock"


class WorkdirLocked(RuntimeError):
  """Raised when another process holds the workdir's lock."""


@contextlib.contextmanager
def hold(workdir: str) -> Iterator[None]:
  """Holds an exclusive fcntl lock on workdir/.lock (created with the workdir) until the block exits.

  The file records the holder's pid; a second holder fails at once naming the workdir and that pid.
  The operating system releases the lock when the process exits, however it exits.  Remote paths
  (``gs://...``) are not locked.
  """
  if "://" in str(workdir):
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
      raise WorkdirLocked(
        f"workdir {workdir} is locked by process {holder} (another run "
        f"trains there); wait for it or stop it"
      ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
    try:
      yield
    finally:
      os.ftruncate(fd, 0)
      fcntl.flock(fd, fcntl.LOCK_UN)
  finally:
    os.close(fd)
