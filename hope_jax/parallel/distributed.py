"""Multi-host start-up: ``jax.distributed.initialize`` when asked for or a cluster is detected."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import jax

# Each detector says whether the environment is one process of a multi-process job.
_DETECTORS: dict[str, Callable[[Mapping[str, str]], bool]] = {
  # Jax's own variable (read by jax.distributed.initialize itself).
  "coordinator": lambda env: bool(env.get("JAX_COORDINATOR_ADDRESS")),
  # A multi-host Cloud TPU slice lists several workers.
  "tpu": lambda env: (
    len([h for h in env.get("TPU_WORKER_HOSTNAMES", "").split(",") if h]) > 1
    or bool(env.get("MEGASCALE_COORDINATOR_ADDRESS"))
  ),
  # A SLURM step with several tasks.
  "slurm": lambda env: (
    bool(env.get("SLURM_JOB_ID"))
    and int(env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1")) or 1) > 1
  ),
  # Open MPI's launcher.
  "openmpi": lambda env: int(env.get("OMPI_COMM_WORLD_SIZE", "1") or 1) > 1,
}


def detect_cluster(env: Mapping[str, str] | None = None) -> str | None:
  """Returns the name of the detected multi-process environment, or None for a single process."""
  env = os.environ if env is None else env
  return next((name for name, detect in _DETECTORS.items() if detect(env)), None)


def _is_initialized() -> bool:
  """Whether jax.distributed was already initialised in this process."""
  return bool(jax.distributed.is_initialized())


def initialize_distributed(enabled: bool | str = "auto", **kwargs) -> bool:
  """Calls jax.distributed.initialize(**kwargs) when enabled (or "auto" and a cluster is detected).

  Returns whether the process is part of an initialised multi-process job; a single process with
  enabled="auto" (or False) is a no-op.  kwargs (coordinator_address, num_processes, process_id,
  …) go to jax.distributed.initialize, which otherwise finds them in the environment.
  """
  if enabled not in (True, False, "auto"):
    raise ValueError(f"enabled must be True, False or 'auto', got enabled={enabled!r}")
  if enabled == "auto":
    enabled = detect_cluster() is not None or bool(kwargs)
  if not enabled:
    return False
  if not _is_initialized():
    jax.distributed.initialize(**kwargs)
  return True
