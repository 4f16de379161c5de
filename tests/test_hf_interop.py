"""Hugging Face parity: converted checkpoints and exported runs give ``transformers``' own logits.

The reference logits in tests/fixtures/hf/*/reference.npz were computed by ``transformers`` (see
make_fixtures.py there, which records its version); nothing here re-implements it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from safetensors.numpy import load_file

from hope_jax.interop import hf_config, hf_weights
from hope_jax.interop.export import write_hf_directory
from hope_jax.model import Transformer, TransformerConfig
from hope_jax.parallel import sharding
from hope_jax.training import step as train_step

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "hf")
_spec = importlib.util.spec_from_file_location(
  "make_fixtures", os.path.join(FIXTURES, "make_fixtures.py")
)
make_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_fixtures)
FLOAT32_TOL = dict(rtol=1e-4, atol=2e-4)
RUNTIME = dict(
  dtype="float32",
  param_dtype="float32",
  attention_impl="xla",
  norm_impl="xla",
  projection_impl="xla",
)


def reference(case: str) -> tuple[np.ndarray, np.ndarray]:
  """The tokens and transformers' float32 logits of a fixture case."""
  data = np.load(os.path.join(FIXTURES, case, "reference.npz"))
  return data["tokens"], data["logits"]


def config_from_fixture(directory: str, **overrides) -> TransformerConfig:
  """The TransformerConfig an HF directory implies, with float32 runtime settings."""
  fields = hf_config.model_fields_from_hf(hf_config.read_hf_config(directory))
  return TransformerConfig(**{**fields, **RUNTIME, **overrides})


def converted_model(directory: str, config: TransformerConfig, mesh) -> Transformer:
  """The Transformer whose parameters read_params streamed from directory onto mesh."""
  graphdef, abstract, _ = train_step.abstract_train_state(config, optax.identity(), mesh=mesh)
  params = hf_weights.read_params(directory, config, abstract.params)
  for leaf in jax.tree.leaves(params):
    assert leaf.sharding.is_equivalent_to(leaf.sharding, leaf.ndim)
  return nnx.merge(graphdef, params, abstract.model_state)


@pytest.fixture(scope="module")
def mesh():
  """All (eight virtual CPU) devices on the fsdp axis, so every parameter is read in shards."""
  return sharding.make_mesh(sharding.MeshConfig(data=1, fsdp=-1, tensor=1))


@pytest.mark.parametrize("case", sorted(make_fixtures.IMPORT_CASES))
def test_converted_checkpoint_gives_transformers_logits(case, mesh):
  directory = os.path.join(FIXTURES, case)
  config = config_from_fixture(directory)
  model = converted_model(directory, config, mesh)
  embedding = model.embedding[...]
  assert len(embedding.sharding.device_set) == len(jax.devices())
  tokens, expected = reference(case)
  np.testing.assert_allclose(np.asarray(model(tokens)), expected, **FLOAT32_TOL)


def test_llama3_scaling_and_gqa_are_what_the_fixture_exercises():
  fields = hf_config.model_fields_from_hf(
    hf_config.read_hf_config(os.path.join(FIXTURES, "llama3_scaling"))
  )
  assert (fields["scaling"], fields["scaling_factor"], fields["train_length"]) == (
    "llama3",
    8.0,
    32,
  )
  assert fields["num_kv_heads"] < fields["num_heads"] and fields["tie_embeddings"]
  assert fields["head_dim"] * fields["num_heads"] != fields["embed_dim"]


def test_transformers_4_spelling_of_rope_fields_maps_the_same(tmp_path):
  legacy = _edited_copy(
    tmp_path,
    "llama3_scaling",
    rope_parameters=None,
    rope_theta=500000.0,
    rope_scaling={
      "type": "llama3",
      "factor": 8.0,
      "low_freq_factor": 1.0,
      "high_freq_factor": 4.0,
      "original_max_position_embeddings": 32,
    },
  )
  current = os.path.join(FIXTURES, "llama3_scaling")
  assert hf_config.model_fields_from_hf(
    hf_config.read_hf_config(legacy)
  ) == hf_config.model_fields_from_hf(hf_config.read_hf_config(current))


def test_converted_checkpoint_in_bfloat16_within_bfloat16_tolerance(mesh):
  directory = os.path.join(FIXTURES, "llama_gqa")
  config = config_from_fixture(directory, dtype="bfloat16")
  tokens, expected = reference("llama_gqa")
  logits = np.asarray(converted_model(directory, config, mesh)(tokens))
  assert np.abs(logits - expected).max() < 0.1 * np.abs(expected).max()
  assert np.mean(logits.argmax(-1) == expected.argmax(-1)) > 0.9


@pytest.mark.parametrize("case", sorted(make_fixtures.EXPORT_CASES))
def test_exported_run_gives_transformers_logits(case, tmp_path):
  config = dataclasses.replace(make_fixtures.model_config(case))
  params = make_fixtures.numpy_params(config, seed=list(make_fixtures.EXPORT_CASES).index(case))
  out = tmp_path / case
  write_hf_directory(config, params, str(out))
  committed = os.path.join(FIXTURES, case)
  with open(os.path.join(committed, "config.json"), encoding="utf-8") as f:
    assert json.load(f) == json.loads((out / "config.json").read_text())
  written, expected_tensors = (
    load_file(str(out / "model.safetensors")),
    load_file(os.path.join(committed, "model.safetensors")),
  )
  assert sorted(written) == sorted(expected_tensors)
  for name, array in expected_tensors.items():
    np.testing.assert_array_equal(written[name], array, err_msg=name)
  model = nnx.merge(
    nnx.graphdef(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))), params
  )
  tokens, expected = reference(case)
  np.testing.assert_allclose(np.asarray(model(tokens)), expected, **FLOAT32_TOL)


@pytest.mark.parametrize(
  "config",
  [
    make_fixtures.model_config("export_hope_gqa"),
    # 2·15/44 · 44 rounds to 29.999…: the factor is nudged up so that int(head_dim · factor) = 30
    TransformerConfig(
      vocab_size=64,
      num_layers=1,
      embed_dim=88,
      num_heads=2,
      head_dim=44,
      encoder="hope",
      encoder_params={"num_kept_bands": 15},
    ),
  ],
)
def test_hope_exports_as_phi3_partial_rotary_with_rescaled_base(config):
  hf = hf_config.hf_config_from_model(config)
  kept = config.encoding.num_rotated_bands
  assert hf["architectures"] == ["Phi3ForCausalLM"] and 0 < kept < config.head_dim // 2
  rotary_dim = int(config.head_dim * hf["partial_rotary_factor"])
  assert rotary_dim == 2 * kept
  phi3_freqs = hf["rope_theta"] ** -(np.arange(0, rotary_dim, 2) / rotary_dim)
  np.testing.assert_allclose(phi3_freqs, config.encoding.frequencies[:kept], rtol=2e-6)


def test_exported_then_converted_round_trips(tmp_path, mesh):
  config = make_fixtures.model_config("export_rope_gqa")
  params = make_fixtures.numpy_params(config, seed=0)
  write_hf_directory(config, params, str(tmp_path), max_shard_bytes=20_000)
  assert len([f for f in os.listdir(tmp_path) if f.endswith(".safetensors")]) > 1
  back = converted_model(str(tmp_path), config_from_fixture(str(tmp_path)), mesh)
  for (path, a), b in zip(
    jax.tree_util.tree_flatten_with_path(params)[0], jax.tree.leaves(nnx.state(back, nnx.Param))
  ):
    np.testing.assert_array_equal(np.asarray(b), a, err_msg=jax.tree_util.keystr(path))


# ----------------------------------------------------------------------------------------------
# Inputs that do not map fail naming what does not.


def _edited_copy(tmp_path, case: str, **changes) -> str:
  """A copy of a fixture directory with config.json fields changed (None deletes)."""
  directory = tmp_path / case
  shutil.copytree(os.path.join(FIXTURES, case), directory)
  hf = json.loads((directory / "config.json").read_text())
  for key, value in changes.items():
    if value is None:
      hf.pop(key, None)
    else:
      hf[key] = value
  (directory / "config.json").write_text(json.dumps(hf))
  return str(directory)


@pytest.mark.parametrize(
  "changes, message",
  [
    (dict(architectures=["Qwen2ForCausalLM"]), "Qwen2ForCausalLM"),
    (dict(architectures=["GPT2LMHeadModel"]), "GPT2LMHeadModel"),
    (dict(attention_bias=True), "attention_bias"),
    (dict(sliding_window=4096), "sliding_window"),
    (dict(hidden_act="gelu"), "hidden_act"),
    (dict(qk_layernorm=True), "qk_layernorm"),
    (dict(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e4}), "yarn"),
    (
      dict(
        rope_parameters={
          "rope_type": "llama3",
          "factor": 8.0,
          "low_freq_factor": 2.0,
          "high_freq_factor": 4.0,
          "original_max_position_embeddings": 32,
          "rope_theta": 5e5,
        }
      ),
      "low_freq_factor",
    ),
    (dict(intermediate_size=None), "intermediate_size"),
  ],
)
def test_unmappable_config_fails_naming_the_field(tmp_path, changes, message):
  directory = _edited_copy(tmp_path, "llama_gqa", **changes)
  with pytest.raises(hf_config.UnsupportedCheckpoint, match=message):
    hf_config.model_fields_from_hf(hf_config.read_hf_config(directory))


def test_missing_shard_fails_naming_the_file(tmp_path):
  config = make_fixtures.model_config("export_rope_gqa")
  write_hf_directory(
    config, make_fixtures.numpy_params(config, seed=0), str(tmp_path), max_shard_bytes=20_000
  )
  shard = sorted(f for f in os.listdir(tmp_path) if f.endswith(".safetensors"))[1]
  os.remove(tmp_path / shard)
  with pytest.raises(FileNotFoundError, match=shard):
    hf_weights.SafetensorsReader(str(tmp_path))


def test_extra_tensor_fails_naming_it(tmp_path, mesh):
  from safetensors.numpy import save_file

  directory = _edited_copy(tmp_path, "llama_gqa")
  tensors = load_file(os.path.join(directory, "model.safetensors"))
  tensors["model.layers.0.self_attn.q_proj.bias"] = np.zeros(32, np.float32)
  save_file(tensors, os.path.join(directory, "model.safetensors"))
  with pytest.raises(hf_config.UnsupportedCheckpoint, match="q_proj.bias"):
    converted_model(directory, config_from_fixture(directory), mesh)


def test_wrong_shape_fails_naming_the_tensor(tmp_path, mesh):
  directory = _edited_copy(tmp_path, "llama_gqa", intermediate_size=96)
  with pytest.raises(
    hf_config.UnsupportedCheckpoint, match=r"mlp\.\w+_proj\.weight.*the config implies"
  ):
    converted_model(directory, config_from_fixture(directory), mesh)


@pytest.mark.parametrize(
  "overrides, message",
  [
    (dict(encoder="alibi", encoder_params={}), "alibi"),
    (dict(encoder="hope", encoder_params={"num_kept_bands": 0}), "NoPE"),
    (dict(logn_scaling=True), "logn_scaling"),
    (dict(scaling="yarn", scaling_factor=4.0), "yarn"),
  ],
)
def test_unexportable_model_fails_naming_the_field(overrides, message):
  config = dataclasses.replace(make_fixtures.model_config("export_rope_gqa"), **overrides)
  with pytest.raises(hf_config.UnsupportedCheckpoint, match=message):
    hf_config.hf_config_from_model(config)


@pytest.mark.parametrize("case", sorted(make_fixtures.EXPORT_CASES))
def test_exported_run_against_live_transformers(case, tmp_path):
  """Where torch and transformers are installed (the GPU image): the same check, live."""
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  config = make_fixtures.model_config(case)
  params = make_fixtures.numpy_params(config, seed=11)
  write_hf_directory(config, params, str(tmp_path))
  hf_model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path), dtype=torch.float32)
  tokens = make_fixtures.tokens(config.vocab_size, seed=12)
  with torch.no_grad():
    expected = hf_model.eval()(torch.from_numpy(tokens)).logits.float().numpy()
  model = nnx.merge(
    nnx.graphdef(nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))), params
  )
  np.testing.assert_allclose(np.asarray(model(tokens)), expected, **FLOAT32_TOL)
