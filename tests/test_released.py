"""Releases: parameters as one safetensors file beside the run's config, and runs made from them."""

from __future__ import annotations

import json
import os

import jax
import ml_dtypes
import numpy as np
import optax
import pytest
from safetensors.numpy import load_file, save_file

from hope_jax.cli import interop as cli_interop
from hope_jax.config import base as config_base
from hope_jax.config import commands
from hope_jax.interop import released
from hope_jax.parallel import sharding
from hope_jax.training import step as train_step


@pytest.fixture(scope="module")
def mesh():
  """All (eight virtual CPU) devices on the fsdp axis, so parameters are placed in shards."""
  return sharding.make_mesh(sharding.MeshConfig(data=1, fsdp=-1, tensor=1))


def _abstract_params(config, mesh):
  _, abstract, _ = train_step.abstract_train_state(config, optax.identity(), mesh=mesh)
  return abstract.params


def _random_params(abstract, seed: int = 0):
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda a: jax.device_put(rng.standard_normal(a.shape).astype(np.float32), a.sharding), abstract
  )


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_params_round_trip_through_the_file(tmp_path, tiny_config, mesh, dtype):
  abstract = _abstract_params(tiny_config(), mesh)
  params = _random_params(abstract)
  path = str(tmp_path / "params.safetensors")
  num_bytes = released.save_params(params, path, dtype=dtype)
  assert num_bytes == sum(x.size for x in jax.tree.leaves(params)) * (
    4 if dtype == "float32" else 2
  )
  back = released.load_params(path, abstract)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back)):
    expected = np.asarray(a).astype(released.DTYPES[dtype]).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(b), expected)
    assert b.dtype == np.float32 and b.sharding == a.sharding
  assert "blocks.0.attn.q_proj" in load_file(path)


def test_load_refuses_a_file_of_another_model(tmp_path, tiny_config, mesh):
  abstract = _abstract_params(tiny_config(), mesh)
  path = str(tmp_path / "params.safetensors")
  released.save_params(_random_params(abstract), path)
  with pytest.raises(ValueError, match=r"'blocks\.2\..*' is missing from"):
    released.load_params(path, _abstract_params(tiny_config(num_layers=3), mesh))
  with pytest.raises(
    ValueError, match=r"'embedding' has shape \(128, 64\) .* model's is \(256, 64\)"
  ):
    released.load_params(path, _abstract_params(tiny_config(vocab_size=256), mesh))
  tensors = load_file(path)
  tensors["blocks.0.attn.bias"] = np.zeros(3, ml_dtypes.bfloat16)
  save_file(tensors, path)
  with pytest.raises(ValueError, match=r"'blocks\.0\.attn\.bias' is not in the model but in"):
    released.load_params(path, abstract)


def _tiny_run_config(steps: int = 2):
  config = config_base.base_config()
  config.data.seq_len = 32
  config.train.update(dict(steps=steps, batch_size=8, log_every=1, checkpoint_every=steps))
  config.train.tensorboard = False
  config.eval.evaluations = ("perplexity",)
  config.eval.perplexity.update(dict(lengths=(1, 2), max_windows=2))
  config.lock()
  return config


def test_a_released_run_evaluates_as_the_run_itself(tmp_path):
  config = _tiny_run_config()
  with config.unlocked():
    config.data.cache_dir = str(tmp_path / "token-cache")
  run_dir, release_dir, copy_dir = (str(tmp_path / n) for n in ("run", "release", "copy"))
  commands.train(config, run_dir, verbose=False)
  cli_interop.export(run_dir, release_dir, release=True, dtype="float32")
  with open(os.path.join(release_dir, "release.json"), encoding="utf-8") as f:
    info = json.load(f)
  assert info["step"] == 2 and [r["step"] for r in info["last_losses"]] == [1, 2]
  assert info["source"] == "run"  # the run's name, not the exporting machine's path
  with open(os.path.join(release_dir, "config.json"), encoding="utf-8") as f:
    assert json.load(f)["data"]["cache_dir"] == ""
  assert sorted(os.listdir(release_dir)) == ["config.json", "params.safetensors", "release.json"]
  released.run_from_release(release_dir, copy_dir)
  original = commands.evaluate(config, run_dir, verbose=False)["perplexity"]["results"]
  copied = commands.evaluate(config, copy_dir, verbose=False)["perplexity"]["results"]
  assert [r["perplexity"] for r in copied] == [r["perplexity"] for r in original]
  with open(os.path.join(copy_dir, "eval", "perplexity.json"), encoding="utf-8") as f:
    assert json.load(f)["run"]["step"] == 2
