"""The README's Hugging Face recipe end to end on a small model: convert, evaluate to 32 × L with and
without YaRN, switch the encoder to HoPE, continue pretraining, evaluate again, export."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from hope_jax.cli import interop as cli_interop
from hope_jax.config import base as config_base
from hope_jax.config import commands
from hope_jax.config.resolve import resolve
from hope_jax.interop import convert
from hope_jax.interop.export import write_hf_directory
from hope_jax.model import TransformerConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests", "fixtures", "hf"))
from make_fixtures import numpy_params  # noqa: E402 - the fixtures folder is put on the path first

LENGTH = 16  # the source model's context (max_position_embeddings)


@pytest.fixture(scope="module")
def hf_model(tmp_path_factory) -> str:
  """A Llama directory at the shipped tokenizer's vocabulary (random weights, tokenizer.model)."""
  config = TransformerConfig(
    vocab_size=16384,
    num_layers=1,
    embed_dim=32,
    num_heads=2,
    num_kv_heads=1,
    mlp_dim=64,
    train_length=LENGTH,
    dtype="float32",
    norm_eps=1e-5,
    encoder_params={"base": 10000.0},
  )
  directory = str(tmp_path_factory.mktemp("hf") / "llama")
  write_hf_directory(config, numpy_params(config, seed=7), directory)
  return directory


def config_file(workdir: str):
  """The config a run's config.py (what --config takes) returns."""
  spec = importlib.util.spec_from_file_location("run_config", os.path.join(workdir, "config.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def recipe_base() -> object:
  """What the user's --config supplies besides the model: data, a short training, the evaluation."""
  config = config_base.base_config()
  config.data.seq_len = LENGTH
  config.train.update(
    dict(
      steps=2,
      batch_size=8,
      learning_rate=1e-3,
      warmup_steps=1,
      log_every=2,
      checkpoint_every=2,
      tensorboard=False,
    )
  )
  config.eval.evaluations = ("perplexity",)
  config.eval.perplexity.update(dict(lengths=(1, 32), max_windows=2))
  return config


def perplexities(workdir: str, eval_dir: str) -> dict[int, float]:
  """{evaluation length: mean token NLL} of the perplexity evaluation written in eval_dir."""
  with open(os.path.join(workdir, eval_dir, "perplexity.json"), encoding="utf-8") as f:
    return {r["length"]: r["nll"] for r in json.load(f)["results"]}


def test_recipe_convert_evaluate_switch_to_hope_continue_evaluate_export(hf_model, tmp_path):
  rope_run, hope_run = str(tmp_path / "llama"), str(tmp_path / "llama_hope")
  # 1. convert; the run's config.py is what --config takes from here on
  cli_interop.convert(hf_model, rope_run, recipe_base())
  config = config_file(rope_run)
  assert (config.model.train_length, config.model.encoder) == (LENGTH, "rope")
  # 2. perplexity to 32 × L, without and with YaRN
  commands.evaluate(config, rope_run, verbose=False)
  yarn = config_file(rope_run)
  with yarn.unlocked():
    yarn.eval.scaling = "yarn"
  commands.evaluate(yarn, rope_run, verbose=False)
  plain, scaled = perplexities(rope_run, "eval"), perplexities(rope_run, "eval_yarn")
  assert set(plain) == set(scaled) == {LENGTH, 32 * LENGTH}
  assert all(math.isfinite(v) for v in plain.values())
  # YaRN's factor is 1 within L (the same model) and 32 at 32 × L (another one)
  np.testing.assert_allclose(scaled[LENGTH], plain[LENGTH], rtol=1e-5)
  assert abs(scaled[32 * LENGTH] - plain[32 * LENGTH]) > 1e-4
  # 3. switch the encoder to HoPE (L = the original context) and continue pretraining
  hope = config_file(rope_run)
  with hope.unlocked():
    hope.model.encoder = "hope"
  cli_interop.convert(rope_run, hope_run, hope)
  summary = commands.train(config_file(hope_run), hope_run, verbose=False)
  assert (summary["start_step"], summary["final_step"]) == (0, 2)
  assert math.isfinite(summary["final_loss"])
  # 4. evaluate again
  commands.evaluate(config_file(hope_run), hope_run, verbose=False)
  assert set(perplexities(hope_run, "eval")) == set(plain)
  # 5. and out again: HoPE as Phi-3
  cli_interop.export(hope_run, str(tmp_path / "hf_hope"))
  with open(tmp_path / "hf_hope" / "config.json", encoding="utf-8") as f:
    assert json.load(f)["architectures"] == ["Phi3ForCausalLM"]
  assert os.path.isfile(tmp_path / "hf_hope" / "tokenizer.model")


def test_new_run_starts_from_the_source_parameters(hf_model, tmp_path):
  rope_run, hope_run = str(tmp_path / "a"), str(tmp_path / "b")
  convert.convert_hf(hf_model, rope_run, recipe_base())
  hope = convert.load_run_config(rope_run)
  hope.model.encoder = "hope"
  convert.init_from_run(rope_run, hope_run, hope)
  source = resolve(convert.load_run_config(rope_run)).setup(rope_run, fresh_ok=False)
  target = resolve(convert.load_run_config(hope_run)).setup(hope_run, fresh_ok=False)
  for run in (source, target):
    run.checkpointer.close()
  assert int(target.state.step) == 0 and target.model_config.encoder == "hope"
  for a, b in zip(jax.tree.leaves(source.state.params), jax.tree.leaves(target.state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert all(
    not np.any(np.asarray(x)) for x in jax.tree.leaves(target.state.opt_state) if np.ndim(x) > 0
  )


def test_convert_refuses_a_changed_shape_and_an_existing_run(hf_model, tmp_path):
  run = str(tmp_path / "a")
  convert.convert_hf(hf_model, run, recipe_base())
  with pytest.raises(FileExistsError, match="already holds checkpoints"):
    convert.convert_hf(hf_model, run, recipe_base())
  wider = convert.load_run_config(run)
  wider.model.mlp_dim = 128
  with pytest.raises(ValueError, match="mlp"):
    convert.init_from_run(run, str(tmp_path / "b"), wider)


@pytest.mark.slow
def test_cli_convert_then_export_gives_back_the_same_directory(hf_model, tmp_path):
  run, back = str(tmp_path / "run"), str(tmp_path / "back")
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
  for args in (
    ["convert", f"--source={hf_model}", f"--workdir={run}"],
    ["export", f"--workdir={run}", f"--out={back}"],
  ):
    subprocess.run(
      [sys.executable, "-m", "hope_jax", *args, "--quiet"],
      check=True,
      cwd=REPO,
      env=env,
      capture_output=True,
    )
  with open(os.path.join(hf_model, "config.json"), encoding="utf-8") as f:
    assert json.loads((tmp_path / "back" / "config.json").read_text()) == json.load(f)
  source, exported = (load_file(os.path.join(d, "model.safetensors")) for d in (hf_model, back))
  assert sorted(source) == sorted(exported)
  for name, array in source.items():
    np.testing.assert_array_equal(exported[name], array, err_msg=name)
