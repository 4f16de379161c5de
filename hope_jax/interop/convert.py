"""New runs from existing weights: a Hugging Face directory, or another run's checkpoint under a new config.

Either way the run directory gets ``checkpoints/0`` (the parameters, a fresh optimizer state,
step 0), ``config.json`` and ``run_info.json`` as ``train`` writes them, and ``config.py``, a config
file that ``--config`` takes: ``train`` continues from step 0 and ``evaluate`` reads the checkpoint.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from hope_jax import model
from hope_jax.config import commands
from hope_jax.config.resolve import resolve
from hope_jax.interop import hf_config, hf_weights
from hope_jax.parallel import sharding
from hope_jax.training import checkpointing, loop, optim
from hope_jax.training import step as train_step

ParamsLoader = Callable[[model.TransformerConfig, Any], Any]

_CONFIG_PY = '''"""The config of the run converted from {source!r}.

    python -m hope_jax train --config={path} --workdir={workdir}
"""

import json

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """Returns the converted run's config."""
  del arg
  config = ml_collections.ConfigDict(json.loads(CONFIG_JSON))
  config.lock()
  return config


CONFIG_JSON = r"""
{config_json}
"""
'''


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """Returns the config a run recorded in workdir/config.json."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no config.json in the run directory {workdir!r}")
  with open(path, encoding="utf-8") as f:
    return ml_collections.ConfigDict(json.load(f))


def config_from_hf(hf_dir: str, base: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Returns ``base`` with its model fields those the HF config implies.

  A ``tokenizer.model`` (SentencePiece) in the HF directory becomes ``data.tokenizer``.
  """
  fields = hf_config.model_fields_from_hf(hf_config.read_hf_config(hf_dir))
  config = copy.deepcopy(base)
  config.unlock()
  encoder_params = fields.pop("encoder_params")
  for key, value in fields.items():
    config.model[key] = value
  for key, value in encoder_params.items():
    config.model.encoder_params[key] = value
  sentencepiece = os.path.join(os.path.abspath(hf_dir), "tokenizer.model")
  if os.path.isfile(sentencepiece):
    config.data.tokenizer = sentencepiece
  config.lock()
  return config


def write_config_py(config: ml_collections.ConfigDict, workdir: str, source: str) -> str:
  """Writes workdir/config.py, a config file holding ``config``; returns its path."""
  path = os.path.join(workdir, "config.py")
  text = json.dumps(config.to_dict(), indent=2, sort_keys=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write(_CONFIG_PY.format(source=source, path=path, workdir=workdir, config_json=text))
  return path


def write_initial_run(
  config: ml_collections.ConfigDict,
  workdir: str,
  load_params: ParamsLoader,
  *,
  source: str,
  step: int = 0,
) -> str:
  """Writes a run at ``step`` whose parameters ``load_params(model_config, abstract_params)`` returns.

  Raises FileExistsError when workdir already holds checkpoints (never overwrites a run).
  Returns the path of the written config.py.
  """
  if os.path.isdir(os.path.join(workdir, "checkpoints")) and os.listdir(
    os.path.join(workdir, "checkpoints")
  ):
    raise FileExistsError(f"{workdir!r} already holds checkpoints; convert into a new directory")
  run_config = resolve(config)
  mesh = sharding.make_mesh(run_config.mesh)
  rules = run_config.mesh.rules
  cfg = run_config.model
  optimizer = optim.make_optimizer(run_config.optimizer)
  _, abstract, shardings = train_step.abstract_train_state(cfg, optimizer, mesh=mesh, rules=rules)
  params = load_params(cfg, abstract.params)
  with jax.set_mesh(mesh):
    opt_state = jax.jit(optimizer.init, out_shardings=shardings.opt_state)(params)
  state = train_step.TrainState(
    step=jax.device_put(jnp.asarray(step, jnp.int32), shardings.step),
    params=params,
    opt_state=opt_state,
    model_state=jax.tree.map(
      lambda a: jnp.zeros(a.shape, a.dtype, device=a.sharding), abstract.model_state
    ),
  )
  commands.save_config(config, workdir)
  loop.record_run_info(workdir, cfg)
  checkpointer = checkpointing.Checkpointer(
    workdir, keep=run_config.train.keep_checkpoints, async_save=False
  )
  try:
    checkpointer.save(step, state, metadata={"step": step, "source": source})
  finally:
    checkpointer.close()
  return write_config_py(config, workdir, source) if jax.process_index() == 0 else ""


def convert_hf(
  hf_dir: str, workdir: str, base: ml_collections.ConfigDict
) -> ml_collections.ConfigDict:
  """Converts a Hugging Face Llama-family directory into a step-0 run in workdir; returns its config."""
  config = config_from_hf(hf_dir, base)
  write_initial_run(
    config,
    workdir,
    lambda cfg, abstract: hf_weights.read_params(hf_dir, cfg, abstract),
    source=os.path.abspath(hf_dir),
  )
  return config


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """{parameter path: shape} of a params tree."""
  return {
    hf_weights.path_name(p): tuple(x.shape)
    for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
  }


def init_from_run(
  source_workdir: str, workdir: str, config: ml_collections.ConfigDict | None = None
) -> ml_collections.ConfigDict:
  """A new run in workdir from another run's latest parameters under ``config`` (its own if None).

  The new config may change what keeps the parameters' shapes (the encoder, its training length,
  the optimizer, the data); the optimizer state is fresh and the step is 0.
  """
  source_config = load_run_config(source_workdir)
  config = config if config is not None else source_config

  def load(cfg: model.TransformerConfig, abstract: Any) -> Any:
    run = resolve(source_config).setup(source_workdir, fresh_ok=False)
    assert run.checkpointer is not None  # setup makes one whenever there is a workdir
    run.checkpointer.close()
    have, want = _shapes(run.state.params), _shapes(abstract)
    if have != want:
      diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
      raise ValueError(
        f"the config's model does not take the parameters of {source_workdir!r}: "
        f"{diff[:3]} differ (e.g. {diff[0]}: {have.get(diff[0])} vs "
        f"{want.get(diff[0])})"
      )
    del cfg
    return jax.device_put(run.state.params, jax.tree.map(lambda a: a.sharding, abstract))

  write_initial_run(config, workdir, load, source=os.path.abspath(source_workdir))
  return config
