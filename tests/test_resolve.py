"""Tests of the config boundary: resolve() names bad fields, takes defaults from the registry."""

import json
import os

import pytest
from absl import flags
from ml_collections import config_flags

from hope_jax.config import base as config_base
from hope_jax.config.resolve import LEGACY_EVAL_KEYS, resolve
from hope_jax.evaluation.config import CopySpec, EvalConfig, PasskeySpec
from hope_jax.positional import registry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_encoder_param_defaults_come_from_the_registry():
  params = config_base.base_config().model.encoder_params.to_dict()
  assert params == registry.all_encoder_parameters()
  assert registry.encoder_parameters("hope")["min_periods"] == params["min_periods"] == 1.0


def test_num_kept_bands_is_settable_from_the_command_line():
  config = config_base.base_config()
  config.lock()
  config.model.encoder = "hope"
  config.model.encoder_params.num_kept_bands = 6
  cfg = resolve(config).model
  assert dict(cfg.encoder_params)["num_kept_bands"] == 6 and cfg.encoding.num_rotated_bands == 6
  with pytest.raises(TypeError):
    config.model.encoder_params.num_kept_bands = "six"


def test_defaults_are_filled_once():
  config = config_base.base_config()
  run = resolve(config)
  assert run.model.head_dim == config.model.embed_dim // config.model.num_heads
  assert run.model.train_length == config.data.seq_len
  config.model.update(dict(head_dim=16, train_length=64))
  run = resolve(config)
  assert (run.model.head_dim, run.model.train_length) == (16, 64)
  assert run.optimizer.steps == run.train.steps == config.train.steps


@pytest.mark.parametrize(
  "field, value",
  [
    ("model.num_layers", 0),
    ("model.head_dim", -2),
    ("model.train_length", -1),
    ("model.encoder", "hopee"),
    ("model.dtype", "float8"),
    ("data.source", "web"),
    ("data.seq_len", 0),
    ("train.learning_rate", -1.0),
    ("train.batch_size", 0),
    ("train.init_on", "gpu"),
    ("mesh.tensor", 0),
    ("eval.scaling", "rope"),
    ("eval.passkey.keys", 0),
    ("eval.copy.gaps", (-1.0,)),
    ("distributed", "maybe"),
  ],
)
def test_a_bad_field_is_named_with_its_value(field, value):
  config = config_base.base_config()
  *path, key = field.split(".")
  section = config
  for part in path:
    section = section[part]
  section[key] = value
  with pytest.raises(ValueError) as error:
    resolve(config)
  message = str(error.value)
  assert key in message and repr(value) in message, message


def test_encoder_params_the_encoder_does_not_take_are_rejected():
  config = config_base.base_config()
  config_base.set_encoder(config, "rope", p=0.5)
  with pytest.raises(ValueError, match=r"encoder_params.p=0.5 .* 'rope'"):
    resolve(config)


def test_eval_keys_are_grouped_per_evaluation():
  config = config_base.base_config()
  config.eval.copy.gaps = (0.0, 8.0)
  config.eval.passkey.lengths = (2,)
  evaluation = resolve(config).eval
  assert isinstance(evaluation, EvalConfig) and isinstance(evaluation.copy, CopySpec)
  assert evaluation.copy.gaps == (0.0, 8.0) and evaluation.passkey == PasskeySpec(lengths=(2,))
  config.lock()
  with pytest.raises((AttributeError, KeyError)):
    config.eval.copy_gaps = (1.0,)  # the flat keys are gone
  with pytest.raises(ValueError, match="gapz"):
    EvalConfig.from_mapping({"copy": {"gapz": (1.0,)}})


def test_saved_configs_with_flat_eval_keys_still_resolve():
  path = os.path.join(
    REPO, "experiments", "extrapolation", "results", "runs", "hope", "config.json"
  )
  with open(path, encoding="utf-8") as f:
    saved = json.load(f)
  assert "copy_gaps" in saved["eval"]  # written before the groups
  run = resolve(saved)
  assert run.eval.copy.gaps == tuple(saved["eval"]["copy_gaps"])
  assert run.eval.perplexity.lengths == tuple(saved["eval"]["lengths"])
  assert run.model.encoder == "hope" and run.model.train_length == 512
  assert set(LEGACY_EVAL_KEYS) >= {
    k
    for k in saved["eval"]
    if "_" in k and k.split("_")[0] in ("copy", "passkey", "recall", "attention")
  }


def test_command_line_sets_num_kept_bands_and_grouped_eval_keys():
  argv = [
    "prog",
    f"--config={os.path.join(REPO, 'configs', 'tiny_cpu.py')}:hope",
    "--config.model.encoder_params.num_kept_bands=6",
    "--config.eval.copy.gaps=(0.0,8.0)",
  ]
  flag_values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file("config", flag_values=flag_values, sys_argv=argv)
  flag_values(argv)
  run = resolve(holder.value)
  assert run.model.encoding.num_rotated_bands == 6 and run.eval.copy.gaps == (0.0, 8.0)
