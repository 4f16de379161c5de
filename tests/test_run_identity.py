"""Tests of run identity: the saved config decides the model; mistyped and locked workdirs fail."""

import json
import os
import subprocess
import sys

import pytest

from hope_jax.config import base as config_base
from hope_jax.config import commands, identity
from hope_jax.config.resolve import resolve
from hope_jax.evaluation import tables
from hope_jax.training import workdir_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(encoder="hope", **data_fields):
  config = config_base.base_config()
  config.model.update(dict(num_layers=1, embed_dim=64, num_heads=2, num_kv_heads=2, mlp_dim=128))
  config_base.set_encoder(config, encoder)
  config.data.update({"seq_len": 32, **data_fields})
  config.train.update(
    dict(steps=1, batch_size=8, warmup_steps=0, log_every=1, checkpoint_every=1, tensorboard=False)
  )
  config.eval.update(dict(evaluations=("perplexity",)))
  config.eval.perplexity.update(dict(lengths=(1,), max_windows=2))
  return config


@pytest.fixture(scope="module")
def hope_run(tmp_path_factory):
  """A HoPE run trained one step at L = 32."""
  workdir = str(tmp_path_factory.mktemp("hope_run"))
  commands.train(tiny_config(), workdir, verbose=False)
  return workdir


def _records(workdir):
  return {
    name: open(os.path.join(workdir, name), "rb").read()
    for name in ("config.json", "run_info.json")
  }


def test_evaluating_at_another_training_length_is_refused(hope_run):
  with pytest.raises(identity.RunMismatch, match=r"model.train_length: .* with 32, .* gives 64"):
    commands.evaluate(tiny_config(seq_len=64), hope_run, verbose=False)


def test_evaluating_a_hope_run_as_rope_is_refused(hope_run):
  with pytest.raises(identity.RunMismatch, match=r"model.encoder: .* with 'hope', .* gives 'rope'"):
    commands.evaluate(tiny_config("rope"), hope_run, verbose=False)
  assert not os.path.exists(os.path.join(hope_run, "eval"))


def test_resuming_with_another_model_is_refused_and_keeps_the_record(hope_run):
  before = _records(hope_run)
  changed = tiny_config()
  changed.model.encoder_params.num_kept_bands = 3
  changed.train.steps = 2
  with pytest.raises(identity.RunMismatch, match=r"encoder_params.num_kept_bands: .* None, .* 3"):
    commands.train(changed, hope_run, verbose=False)
  with pytest.raises(identity.RunMismatch, match="model.encoder"):
    commands.train(tiny_config("rope"), hope_run, verbose=False)
  assert _records(hope_run) == before
  assert json.loads(before["config.json"])["model"]["encoder"] == "hope"


def test_evaluation_and_schedule_options_stay_free(hope_run):
  saved = identity.saved_run(hope_run)
  config = tiny_config()
  config.eval.update(dict(scaling="yarn", logn_scaling=True))
  config.eval.perplexity.lengths = (1, 4, 16)
  config.eval.passkey.depths = (0.5,)
  config.train.update(dict(steps=50, learning_rate=1e-4))
  config.model.update(dict(attention_impl="xla", remat="full"))
  identity.check_matches(saved, resolve(config), hope_run)  # no error
  # The saved L is what the run resolves to, however the command spells it.
  config.data.seq_len = 64
  config.model.train_length = 32
  identity.check_matches(saved, resolve(config), hope_run)


def test_evaluate_does_not_create_a_mistyped_workdir(hope_run):
  mistyped = hope_run.rstrip("/") + "_typo"
  with pytest.raises(FileNotFoundError, match="no run in workdir"):
    commands.evaluate(tiny_config(), mistyped, verbose=False)
  assert not os.path.exists(mistyped)


def test_a_second_train_into_a_locked_workdir_fails_naming_it_and_the_holder(tmp_path):
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      "import sys, time\n"
      "from hope_jax.training import workdir_lock\n"
      f"with workdir_lock.hold({str(tmp_path)!r}):\n"
      "  print('held', flush=True); sys.stdin.read()",
    ],
    cwd=REPO,
    stdin=subprocess.PIPE,
    stdout=subprocess.PIPE,
    text=True,
  )
  try:
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(workdir_lock.WorkdirLocked, match=rf"{tmp_path} .* process {holder.pid}"):
      commands.train(tiny_config(), str(tmp_path), verbose=False)
    assert not os.path.exists(tmp_path / "checkpoints")
  finally:
    holder.stdin.close()
    holder.wait(timeout=30)
  with workdir_lock.hold(str(tmp_path)):  # released when its holder exits
    assert (tmp_path / workdir_lock.LOCK_FILE).read_text() == str(os.getpid())


def _fake_run(directory, **run):
  eval_dir = directory / "eval"
  eval_dir.mkdir(parents=True)
  meta = {"encoder": "hope", "label": "hope", "train_length": 128, "seed": 0, **run}
  result = {
    "run": meta,
    "results": [{"length": 128, "perplexity": 10.0, "tokens": 100, "windows": 1}],
  }
  (eval_dir / "perplexity.json").write_text(json.dumps(result))
  return str(directory)


def test_table_refuses_to_merge_runs_of_different_models(tmp_path):
  same = [_fake_run(tmp_path / "a"), _fake_run(tmp_path / "b", seed=1)]
  assert "hope" in tables.write_tables(same, str(tmp_path / "same.md"))
  other = _fake_run(tmp_path / "c", train_length=256, seed=2)
  with pytest.raises(ValueError, match=r"'hope' differ in train_length \(128, 256\)"):
    tables.write_tables(same + [other], str(tmp_path / "mixed.md"))
