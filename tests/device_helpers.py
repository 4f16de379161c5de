"""Devices and meshes for tests, independent of the default backend (a GPU host runs them too).

tests/conftest.py gives the CPU backend eight devices before jax is imported, on any host; meshes
of pure-XLA tests are built from those CPU devices explicitly, so that a host with one GPU runs
them as CI does.  Tests whose Pallas kernels take their mode from ``jax.default_backend()``
(interpret mode on the CPU, compiled on a GPU) need devices of the default backend instead.
"""

from __future__ import annotations

import dataclasses

import jax
import pytest

from hope_jax.model import TransformerConfig
from hope_jax.parallel import sharding

CPU_DEVICE_COUNT = 8  # what tests/conftest.py asks of XLA (--xla_force_host_platform_device_count)


def cpu_devices(count: int) -> list[jax.Device]:
  """Returns the first ``count`` CPU devices, or skips the test (with the reason) if too few."""
  devices = jax.devices("cpu")
  if len(devices) < count:
    pytest.skip(
      f"needs {count} CPU devices, this process has {len(devices)}: set XLA_FLAGS="
      f"--xla_force_host_platform_device_count={CPU_DEVICE_COUNT} before jax is imported"
    )
  return devices[:count]


def cpu_mesh(data: int = 1, fsdp: int = 1, tensor: int = 1) -> jax.sharding.Mesh:
  """Returns a (data, fsdp, tensor) mesh of CPU devices (skips the test if there are too few)."""
  return sharding.make_mesh(
    sharding.MeshConfig(data, fsdp, tensor), cpu_devices(data * fsdp * tensor)
  )


def kernel_mesh(data: int = 1, fsdp: int = 1, tensor: int = 1) -> jax.sharding.Mesh:
  """Returns a mesh of default-backend devices for Pallas kernels (skips if there are too few).

  The kernels run compiled or in interpret mode by ``jax.default_backend()``, so their mesh must be
  of that backend: the CPU's eight devices in CI, the GPUs on a GPU host.
  """
  count, backend = data * fsdp * tensor, jax.default_backend()
  devices = jax.devices()
  if len(devices) < count:
    pytest.skip(
      f"needs {count} {backend} devices for a Pallas kernel on a mesh, this host has "
      f"{len(devices)} (kernels take interpret or compiled mode from the default "
      f"backend, so CPU devices cannot stand in)"
    )
  return sharding.make_mesh(sharding.MeshConfig(data, fsdp, tensor), devices[:count])


def needs_default_devices(count: int) -> None:
  """Skips the test unless the default backend has ``count`` devices (code that takes them all)."""
  if jax.device_count() < count:
    pytest.skip(
      f"needs {count} {jax.default_backend()} devices (the training loop meshes "
      f"jax.devices()), this host has {jax.device_count()}"
    )


def on_cpu(config: TransformerConfig) -> TransformerConfig:
  """Returns config with every implementation "xla": what "auto" picks on the CPU, on any host.

  "auto" looks at ``jax.default_backend()``; on a GPU host it would pick GPU kernels for a model
  whose mesh is of CPU devices.
  """
  return dataclasses.replace(
    config, attention_impl="xla", norm_impl="xla", loss_impl="xla", projection_impl="xla"
  )
