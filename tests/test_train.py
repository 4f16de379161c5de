"""Tests of the training runner: exact resume, preemption, divergence, bad configs, mesh changes."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from device_helpers import needs_default_devices

from hope_jax.config import base as config_base
from hope_jax.config import commands
from hope_jax.config.resolve import resolve
from hope_jax.training import checkpointing, preemption
from hope_jax.training import loop as train
from hope_jax.training import setup as training_setup

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_config(**train_fields):
  config = config_base.base_config()
  config.model.update(dict(num_layers=1, embed_dim=64, num_heads=2, num_kv_heads=2, mlp_dim=128))
  config.data.seq_len = 32
  config.train.update(
    dict(
      steps=8,
      batch_size=8,
      learning_rate=1e-2,
      warmup_steps=2,
      log_every=1,
      checkpoint_every=4,
      tensorboard=False,
    )
  )
  config.train.update(train_fields)
  return config


def losses(history):
  return [(h["step"], h["loss"]) for h in history]


def test_killed_and_resumed_run_reproduces_losses_bit_for_bit(tmp_path):
  full = commands.train(small_config(), str(tmp_path / "full"), verbose=False)
  first = commands.train(small_config(stop_after=3), str(tmp_path / "resumed"), verbose=False)
  assert first["stopped_early"] and first["final_step"] == 3
  second = commands.train(small_config(), str(tmp_path / "resumed"), verbose=False)
  assert second["start_step"] == 3 and second["final_step"] == 8
  resumed = losses(first["history"]) + losses(second["history"])
  if jax.default_backend() == "cpu":
    assert resumed == losses(full["history"])
  else:  # GPU reductions with atomics differ in the last bits between any two runs (H100, session 14)
    np.testing.assert_allclose(np.array(resumed), np.array(losses(full["history"])), rtol=1e-5)

  # The metrics file of the resumed run holds the same records as the uninterrupted one.
  def read(path):
    with open(path / "metrics.jsonl") as f:
      return [(r["step"], r["loss"]) for r in map(json.loads, f)]

  if jax.default_backend() == "cpu":
    assert read(tmp_path / "resumed") == read(tmp_path / "full")
  else:
    np.testing.assert_allclose(read(tmp_path / "resumed"), read(tmp_path / "full"), rtol=1e-5)


def test_workdir_records_config_version_and_devices(tmp_path):
  commands.train(small_config(steps=2, checkpoint_every=2), str(tmp_path), verbose=False)
  info = json.loads((tmp_path / "run_info.json").read_text())
  assert info["device_count"] == jax.device_count() and info["hope_jax"]
  assert info["encoder"] == "rope" and info["train_length"] == 32
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["data"]["seq_len"] == 32
  assert checkpointing.Checkpointer(str(tmp_path)).latest_step() == 2


def test_nan_loss_stops_with_step_and_checkpoint(tmp_path):
  config = small_config(
    steps=6, learning_rate=1e35, warmup_steps=0, clip_norm=0.0, checkpoint_every=1, log_every=1
  )
  with pytest.raises(train.TrainingDiverged, match=r"at step \d+.*checkpoint"):
    commands.train(config, str(tmp_path), verbose=False)
  # Every saved checkpoint precedes the divergence.
  steps = checkpointing.Checkpointer(str(tmp_path)).all_steps()
  assert all(s < 6 for s in steps)


def test_restore_onto_a_different_mesh(tmp_path):
  needs_default_devices(8)  # the loop meshes jax.devices(): 8 CPU devices in CI
  config = small_config(steps=2, checkpoint_every=2)
  config.mesh.update(dict(data=8, fsdp=1, tensor=1))
  commands.train(config, str(tmp_path), verbose=False)
  saved = resolve(config).setup(str(tmp_path))
  other = small_config(steps=2, checkpoint_every=2)
  other.mesh.update(dict(data=2, fsdp=2, tensor=2))
  moved = resolve(other).setup(str(tmp_path))
  assert dict(moved.mesh.shape) == {"data": 2, "fsdp": 2, "tensor": 2}
  for a, b in zip(jax.tree.leaves(saved.state.params), jax.tree.leaves(moved.state.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  mlp_up = moved.state.params["blocks"][0]["mlp"]["up"]
  spec = str(mlp_up.get_value().sharding.spec)
  assert "tensor" in spec and "fsdp" in spec


def test_setup_restores_without_building_a_fresh_state(tmp_path, monkeypatch):
  with pytest.raises(FileNotFoundError, match="train first"):
    resolve(small_config()).setup(str(tmp_path), fresh_ok=False)
  with pytest.raises(ValueError, match="step=2 .* workdir=None"):
    resolve(small_config()).setup(None, step=2)
  commands.train(small_config(steps=4, checkpoint_every=2), str(tmp_path), verbose=False)

  def no_fresh_state(*args, **kwargs):
    raise AssertionError("a fresh state was built before restoring")

  monkeypatch.setattr(training_setup.train_step, "create_train_state", no_fresh_state)
  latest = resolve(small_config()).setup(str(tmp_path))
  earlier = resolve(small_config()).setup(str(tmp_path), step=2, fresh_ok=False)
  assert (latest.restored_step, earlier.restored_step) == (4, 2)
  assert int(latest.state.step) == 4 and int(earlier.state.step) == 2
  assert (
    latest.state.params["embedding"].get_value().sharding
    == latest.shardings.params["embedding"].get_value()
  )


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("train.grad_accum_steps", 3, "grad_accum_steps"),
    ("train.min_lr_ratio", 1.5, "min_lr_ratio"),
    ("train.learning_rate", -1.0, "learning_rate"),
    ("model.encoder", "hopee", "encoder"),
    ("mesh.tensor", 3, "tensor"),
    ("data.source", "web", "data.source"),
    ("train.init_on", "gpu", "train.init_on"),
    ("train.batch_size", 6, "batch"),
  ],
)
def test_bad_config_values_fail_before_compiling(tmp_path, field, value, message):
  if field == "train.batch_size":
    needs_default_devices(4)  # a batch of 6 splits over a data axis of 1 or 2 devices
  config = small_config()
  section, key = field.split(".")
  config[section][key] = value
  with pytest.raises(ValueError, match=message):
    resolve(config).setup(str(tmp_path))
  assert not (tmp_path / "checkpoints").exists() or not os.listdir(tmp_path / "checkpoints")


def test_encoder_params_not_taken_by_the_encoder_are_rejected():
  config = small_config()
  config_base.set_encoder(config, "hope", p=0.5)
  with pytest.raises(ValueError, match="encoder_params.p"):
    resolve(config)


def _cli(args, **kwargs):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
  return subprocess.Popen(
    [sys.executable, "-m", "hope_jax", *args],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    **kwargs,
  )


def test_cli_rejects_unknown_keys(tmp_path):
  proc = _cli(
    ["train", "--config=configs/tiny_cpu.py", f"--workdir={tmp_path}", "--config.train.stepz=5"]
  )
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode != 0 and "stepz" in out
  assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize(
  "signum", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)]
)
def test_a_signal_saves_a_checkpoint_and_exits_75(tmp_path, signum):
  """Issue 20.4: preemption (SIGTERM, Ctrl-C) saves, exits 75 and says it will resume."""
  flags = [
    "--config=configs/tiny_cpu.py",
    f"--workdir={tmp_path}",
    "--config.train.log_every=1",
    "--config.train.checkpoint_every=100000",
    "--config.model.num_layers=1",
    "--config.data.seq_len=32",
    "--config.train.batch_size=4",
    "--config.train.tensorboard=False",
  ]
  proc = _cli(["train", *flags, "--config.train.steps=100000"])
  metrics = tmp_path / "metrics.jsonl"
  deadline = time.time() + 150
  while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
    time.sleep(0.5)
  assert proc.poll() is None, proc.communicate()[0]
  proc.send_signal(signum)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == preemption.EXIT_INTERRUPTED == 75, out
  steps = checkpointing.Checkpointer(str(tmp_path)).all_steps()
  assert len(steps) == 1 and 2 <= steps[0] < 100000
  last_logged = json.loads(metrics.read_text().splitlines()[-1])["step"]
  assert steps[0] == last_logged
  name = signal.Signals(signum).name
  assert f"interrupted by {name} at step {steps[0]} " in out and "resume" in out, out
  assert "trained to step" not in out
  if signum == signal.SIGTERM:  # the same run, asked for no more steps than it has, is finished
    proc = _cli(["train", *flags, f"--config.train.steps={steps[0]}"])
    out, _ = proc.communicate(timeout=150)
    assert proc.returncode == 0, out
    assert f"already finished: it is at step {steps[0]}" in out and "nan" not in out, out


def test_relative_workdir(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  summary = commands.train(small_config(steps=2, checkpoint_every=2), "relative/run", verbose=False)
  assert summary["final_step"] == 2
  assert checkpointing.Checkpointer("relative/run").latest_step() == 2


def test_an_unfinished_save_is_ignored_on_resume(tmp_path):
  """A save killed midway leaves a *.orbax-checkpoint-tmp folder; resume uses the last finished one."""
  commands.train(small_config(steps=4, checkpoint_every=2), str(tmp_path), verbose=False)
  broken = tmp_path / "checkpoints" / "6.orbax-checkpoint-tmp-1234"
  broken.mkdir()
  (broken / "partial").write_text("half a checkpoint")
  assert checkpointing.Checkpointer(str(tmp_path)).latest_step() == 4
  summary = commands.train(small_config(steps=6, checkpoint_every=2), str(tmp_path), verbose=False)
  assert summary["start_step"] == 4 and summary["final_step"] == 6
