"""Every config file in configs/ loads, validates, and builds a model config."""

import glob
import importlib.util
import os

import pytest

from hope_jax import model
from hope_jax.config.resolve import resolve

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.py"), recursive=True))


def load(path):
  spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_there_are_configs():
  names = {os.path.relpath(p, REPO) for p in CONFIG_FILES}
  assert {
    "configs/tiny_cpu.py",
    "configs/model_20m.py",
    "configs/model_110m.py",
    "configs/model_340m.py",
    "configs/model_1b.py",
    "configs/model_3b.py",
    "configs/experiments/extrapolation.py",
  } <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: os.path.relpath(p, REPO))
@pytest.mark.parametrize("arg", [None, "hope"])
def test_config_validates(path, arg):
  config = load(path).get_config(arg)
  cfg = resolve(config).model
  assert cfg.train_length == (config.model.train_length or config.data.seq_len)
  if arg == "hope":
    assert cfg.encoder == "hope" and 0 < cfg.encoding.num_rotated_bands < cfg.head_dim // 2


@pytest.mark.parametrize(
  "size, expected",
  [("20m", 20.5e6), ("110m", 110e6), ("340m", 342e6), ("1b", 1.0e9), ("3b", 2.9e9)],
)
def test_preset_sizes(size, expected):
  config = load(os.path.join(REPO, "configs", f"model_{size}.py")).get_config()
  assert model.num_params(resolve(config).model) == pytest.approx(expected, rel=0.03)


def test_experiment_options():
  extrapolation = load(os.path.join(REPO, "configs", "experiments", "extrapolation.py"))
  config = extrapolation.get_config("alibi,seed=3,scaling=none,evals=perplexity,lengths=1+2")
  assert (config.seed, config.model.encoder, config.eval.evaluations) == (
    3,
    "alibi",
    ("perplexity",),
  )
  with pytest.raises(ValueError, match="variant"):
    extrapolation.get_config("rope2")
  with pytest.raises(ValueError, match="unknown option"):
    extrapolation.get_config("rope,sede=1")


@pytest.mark.parametrize("name", ["code_extrapolation.py", "code_extrapolation_tpu.py"])
def test_code_protocol_keeps_each_variant_on_the_110m_model(name):
  protocol = load(os.path.join(REPO, "configs", "experiments", name))
  variants = load(os.path.join(REPO, "configs", "experiments", "code_extrapolation.py")).VARIANTS
  for variant, (encoder, params) in variants.items():
    cfg = resolve(protocol.get_config(f"{variant},seed=2")).model
    assert (cfg.encoder, cfg.num_layers, cfg.embed_dim, cfg.train_length) == (
      encoder,
      12,
      768,
      1024,
    )
    assert {k: dict(cfg.encoder_params)[k] for k in params} == params


def test_code_protocol_holds_out_five_percent_of_the_packages():
  protocol = load(os.path.join(REPO, "configs", "experiments", "code_extrapolation.py"))
  data = resolve(protocol.get_config("rope")).data
  assert (data.source, data.path, data.validation_percent) == (
    "source_tree",
    "sysconfig:purelib",
    5.0,
  )


def test_code_protocol_long_option_evaluates_one_long_length_into_its_own_directory():
  protocol = load(os.path.join(REPO, "configs", "experiments", "code_extrapolation.py"))
  cfg = resolve(protocol.get_config("hope,seed=1,long=1024"))
  assert (cfg.seed, cfg.eval.evaluations, cfg.eval.output_dir) == (
    1,
    ("perplexity",),
    "eval_long-1024",
  )
  assert (cfg.eval.perplexity.lengths, cfg.eval.perplexity.max_windows) == ((1024.0,), 2)
  assert resolve(protocol.get_config("hope,seed=1")).eval.output_dir == ""
  for bad in ("hope,long=3", "hope,long=128,long=256", "hope,scaling=yarn,long=128"):
    with pytest.raises(ValueError, match="long"):
      protocol.get_config(bad)
