"""Released runs: a run's parameters as one safetensors file beside its config.json, and back.

A release is a directory holding ``config.json`` (the run's saved config, the record of what was
trained), ``params.safetensors`` (every parameter under its own path name, e.g.
``blocks.0.attn.q_proj``, in the dtype chosen at release: bfloat16 halves the size) and
``release.json`` (the step, the source run and the last training losses).  It carries no optimizer
state: :func:`run_from_release` turns it back into a run that ``evaluate`` reads (the demo's
pretrained models are releases).
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import ml_dtypes  # registers bfloat16 with NumPy, so BF16 tensors read and write as NumPy arrays
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from hope_jax.config.resolve import resolve
from hope_jax.interop.convert import load_run_config, write_initial_run
from hope_jax.interop.hf_weights import path_name

PARAMS_FILE = "params.safetensors"
RELEASE_FILE = "release.json"
CONFIG_FILE = "config.json"
DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


def save_params(params: Any, path: str, *, dtype: str = "bfloat16") -> int:
  """Writes a params tree as one safetensors file of ``dtype`` (process 0); returns its bytes."""
  if dtype not in DTYPES:
    raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got dtype={dtype!r}")
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  tensors = {path_name(p): np.asarray(jax.device_get(x)).astype(DTYPES[dtype]) for p, x in flat}
  if jax.process_index() == 0:
    save_file(tensors, path, metadata={"format": "hope_jax", "dtype": dtype})
  return sum(t.nbytes for t in tensors.values())


def load_params(path: str, abstract_params: Any) -> Any:
  """Returns abstract_params' tree filled from the file, cast to each leaf's dtype and sharding.

  Raises ValueError naming the first parameter that is missing, extra or of another shape.
  """
  with safe_open(path, framework="np") as f:
    names = set(f.keys())  # noqa: SIM118 - safe_open has no __iter__
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract_params)
    wanted = {path_name(p) for p, _ in flat}
    if names != wanted:
      odd = sorted(names ^ wanted)
      where = "missing from" if odd[0] in wanted else "not in the model but in"
      raise ValueError(f"parameter {odd[0]!r} is {where} {path!r} ({len(odd)} name(s) differ)")
    leaves = []
    for p, leaf in flat:
      array = f.get_tensor(path_name(p))
      if tuple(array.shape) != tuple(leaf.shape):
        raise ValueError(
          f"parameter {path_name(p)!r} has shape {tuple(array.shape)} in {path!r}, "
          f"the model's is {tuple(leaf.shape)}"
        )
      leaves.append(jax.device_put(np.asarray(array, leaf.dtype), leaf.sharding))
  return jax.tree_util.tree_unflatten(treedef, leaves)


def _last_losses(workdir: str, count: int = 5) -> list[dict[str, float]]:
  """The last ``count`` logged {step, loss} records of a run's metrics.jsonl (empty without one)."""
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.isfile(path):
    return []
  with open(path, encoding="utf-8") as f:
    records = [json.loads(line) for line in f if line.strip()]
  losses = [r for r in records if "loss" in r and "step" in r]
  return [{"step": int(r["step"]), "loss": float(r["loss"])} for r in losses[-count:]]


def release_run(
  workdir: str, out_dir: str, *, dtype: str = "bfloat16", step: int | None = None
) -> dict[str, Any]:
  """Writes the run's checkpoint (latest, or ``step``) as a release in out_dir; returns release.json."""
  config = load_run_config(workdir)
  run = resolve(config).setup(workdir, step=step, fresh_ok=False)
  assert run.checkpointer is not None  # setup makes one whenever there is a workdir
  run.checkpointer.close()
  os.makedirs(out_dir, exist_ok=True)
  num_bytes = save_params(run.state.params, os.path.join(out_dir, PARAMS_FILE), dtype=dtype)
  info = {
    "step": int(run.restored_step or 0),
    "dtype": dtype,
    "params_bytes": num_bytes,
    "source": os.path.basename(os.path.abspath(workdir)),
    "last_losses": _last_losses(workdir),
  }
  portable = config.copy_and_resolve_references()
  portable.data.cache_dir = ""  # the exporting machine's token cache means nothing elsewhere
  if jax.process_index() == 0:
    with open(os.path.join(out_dir, CONFIG_FILE), "w", encoding="utf-8") as f:
      f.write(portable.to_json_best_effort(indent=2, sort_keys=True))
    with open(os.path.join(out_dir, RELEASE_FILE), "w", encoding="utf-8") as f:
      json.dump(info, f, indent=2, sort_keys=True)
  return info


def run_from_release(
  release_dir: str, workdir: str, *, config: ml_collections.ConfigDict | None = None
) -> ml_collections.ConfigDict:
  """Writes a run in workdir holding a release's parameters at its step; returns the run's config.

  ``config`` (default: the release's) may change evaluation settings; ``evaluate`` refuses one
  that changes the trained model, as for any run.  The optimizer state is fresh.
  """
  with open(os.path.join(release_dir, RELEASE_FILE), encoding="utf-8") as f:
    info = json.load(f)
  config = config if config is not None else load_run_config(release_dir)
  write_initial_run(
    config,
    workdir,
    lambda cfg, abstract: load_params(os.path.join(release_dir, PARAMS_FILE), abstract),
    source=os.path.abspath(release_dir),
    step=int(info["step"]),
  )
  return config
