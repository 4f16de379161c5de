"""``convert`` and ``export``: Hugging Face checkpoints into runs and runs into Hugging Face directories."""

from __future__ import annotations

import os

import ml_collections

from hope_jax.config import base as config_base
from hope_jax.interop import convert as interop_convert
from hope_jax.interop import export as interop_export
from hope_jax.interop import released


def convert(source: str, workdir: str, config: ml_collections.ConfigDict | None) -> None:
  """Writes a step-0 run in workdir from an HF directory or from another run's checkpoint.

  From an HF directory, ``config`` (default: the base config) gives everything but the model,
  whose fields come from the HF config.json.  From a run, ``config`` (default: the run's own) is
  the new run's whole config: e.g. the same model with encoder HoPE.
  """
  if os.path.isfile(os.path.join(source, "config.json")) and not os.path.isdir(
    os.path.join(source, "checkpoints")
  ):
    interop_convert.convert_hf(source, workdir, config or config_base.base_config())
  elif os.path.isdir(os.path.join(source, "checkpoints")):
    interop_convert.init_from_run(source, workdir, config)
  else:
    raise FileNotFoundError(
      f"--source={source!r} is neither a Hugging Face directory (config.json "
      "and safetensors) nor a run directory (checkpoints/)"
    )
  print(
    f"wrote the step-0 run {workdir}; train or evaluate it with "
    f"--config={os.path.join(workdir, 'config.py')} --workdir={workdir}"
  )


def export(workdir: str, out_dir: str, *, release: bool = False, dtype: str = "bfloat16") -> None:
  """Writes the run's latest checkpoint as a Hugging Face directory, or as a release (``dtype``)."""
  if release:
    info = released.release_run(workdir, out_dir, dtype=dtype)
    print(f"wrote the release {out_dir} (step {info['step']}, {info['params_bytes']:,} bytes)")
    return
  hf = interop_export.export_run(workdir, out_dir)
  print(f"wrote {out_dir} ({hf['architectures'][0]})")
