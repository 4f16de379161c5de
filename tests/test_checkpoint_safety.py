"""Tests of issue 20: non-finite states never saved, corrupt checkpoints, metrics on resume."""

import glob
import json
import logging
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from device_helpers import cpu_devices
from test_train import small_config

from hope_jax.config import commands
from hope_jax.config.resolve import resolve
from hope_jax.parallel import sharding
from hope_jax.training import checkpointing
from hope_jax.training import loop as train
from hope_jax.training import step as train_step

# A failed read leaves orbax's pending reads to be collected with their errors unraised: expected.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def metric_steps(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line)["step"] for line in f]


@pytest.mark.parametrize("checkpoint_every", [1, pytest.param(3, marks=pytest.mark.slow)])
def test_divergence_names_the_last_good_checkpoint_and_saves_no_nan(tmp_path, checkpoint_every):
  """Issue 20.2: learning rate 1e6, keep_checkpoints=2; the gradient norm goes NaN first."""
  config = small_config(
    steps=30,
    learning_rate=1e6,
    warmup_steps=0,
    checkpoint_every=checkpoint_every,
    keep_checkpoints=2,
    log_every=1,
  )
  with pytest.raises(train.TrainingDiverged) as caught:
    commands.train(config, str(tmp_path), verbose=False)
  message = str(caught.value)
  bad_step = int(message.split("training diverged at step ")[1].split(":")[0])
  logged = metric_steps(tmp_path)
  # Same numbering as the logs: every step before the bad one is logged, the bad one is not.
  assert logged == list(range(1, bad_step)), (message, logged)
  steps = checkpointing.Checkpointer(str(tmp_path)).all_steps()
  assert steps or checkpoint_every > 1  # step 1 starts from the finite initial state
  if steps:
    assert f"the last good checkpoint is step {max(steps)}" in message
    assert max(steps) < bad_step
  else:
    assert "no checkpoint was saved" in message
  # Every checkpoint left is finite: each restores and passes its checks.
  for step in steps:
    run = resolve(config).setup(str(tmp_path), step=step)
    assert int(run.state.step) == step
    leaves = jax.tree.leaves(run.state.params)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)


def test_a_non_finite_step_is_not_applied(tiny_config):
  """The step reports finiteness on device and keeps the state of a NaN step unchanged."""
  mesh = sharding.make_mesh(
    sharding.MeshConfig(data=1, fsdp=1, tensor=1), devices=jax.devices()[:1]
  )
  optimizer = optax.adam(1e-3)
  graphdef, state, shardings = train_step.create_train_state(tiny_config(), optimizer, mesh=mesh)
  step = train_step.make_train_step(graphdef, optimizer, mesh=mesh, state_shardings=shardings)
  batch = {"tokens": np.arange(2 * 33, dtype=np.int32).reshape(2, 33) % 128}
  state, metrics = step(state, batch)
  assert bool(metrics["finite"]) and int(state.step) == 1
  poisoned = jax.tree.map(lambda x: x, state)
  embedding = poisoned.params["embedding"]
  embedding.set_value(embedding.get_value().at[0, 0].set(jnp.nan))
  before = jax.device_get((poisoned.params, poisoned.opt_state))
  after, metrics = step(poisoned, batch)
  assert not bool(metrics["finite"]) and not np.isfinite(float(metrics["loss"]))
  assert int(after.step) == 2
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves((after.params, after.opt_state))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_save_refuses_a_non_finite_state(tmp_path):
  checkpointer = checkpointing.Checkpointer(str(tmp_path), async_save=False)
  state = {"w": jnp.ones((4, 4)), "b": jnp.array([1.0, jnp.inf]), "step": jnp.int32(3)}
  with pytest.raises(checkpointing.NonFiniteStateError, match=r"step 3: NaN or Inf in \['b'\]"):
    checkpointer.save(3, state)
  checkpointer.save(2, {**state, "b": jnp.zeros(2)})
  checkpointer.close()
  assert checkpointing.Checkpointer(str(tmp_path)).all_steps() == [2]


def test_checksums_do_not_depend_on_the_sharding():
  devices = cpu_devices(8)  # a GPU host has one GPU: the sharded copy lives on CPU devices
  x = jax.device_put(jnp.arange(8 * 16, dtype=jnp.float32).reshape(8, 16) / 7, devices[0])
  mesh = jax.sharding.Mesh(np.array(devices), ("d",))
  sharded = jax.device_put(x, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d")))
  assert checkpointing.fingerprint({"x": x}) == checkpointing.fingerprint({"x": sharded})
  swapped = x.at[0, :2].set(x[0, 1::-1])  # two elements exchanged
  assert checkpointing.fingerprint({"x": swapped})[0] != checkpointing.fingerprint({"x": x})[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A run with checkpoints 2 and 4 (4 steps, one record per step)."""
  workdir = tmp_path_factory.mktemp("trained")
  commands.train(small_config(steps=4, checkpoint_every=2), str(workdir), verbose=False)
  return workdir


def _largest_data_file(state_dir):
  return max(glob.glob(os.path.join(state_dir, "ocdbt.process_0", "d", "*")), key=os.path.getsize)


def _delete_manifest(state_dir):
  os.remove(os.path.join(state_dir, "manifest.ocdbt"))


def _truncate(state_dir):
  with open(_largest_data_file(state_dir), "r+b") as f:
    f.truncate(1000)


def _overwrite(state_dir):
  path = _largest_data_file(state_dir)
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.seek(size // 4)
    f.write(bytes(range(256)) * (size // 2 // 256))


def _replace_by_older(state_dir):
  """The whole state replaced by checkpoint 2's: orbax reads it without complaint."""
  shutil.rmtree(state_dir)
  shutil.copytree(
    os.path.join(os.path.dirname(os.path.dirname(state_dir)), "2", "state"), state_dir
  )


def _delete_metadata(state_dir):
  os.remove(os.path.join(os.path.dirname(state_dir), "metadata", "metadata"))


def _delete_array_metadata(state_dir):
  os.remove(os.path.join(state_dir, "_METADATA"))


@pytest.mark.parametrize(
  "corrupt",
  [
    _delete_manifest,
    _truncate,
    _overwrite,
    _replace_by_older,
    _delete_metadata,
    _delete_array_metadata,
  ],
)
def test_a_corrupt_latest_checkpoint_is_reported_and_the_previous_one_used(
  trained, tmp_path, corrupt, caplog
):
  """Issue 20.3: a short message naming the step and the path; restore falls back to step 2."""
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  corrupt(str(workdir / "checkpoints" / "4" / "state"))
  config = small_config(steps=4, checkpoint_every=2)
  with pytest.raises(checkpointing.CheckpointError) as caught:
    resolve(config).setup(str(workdir), step=4)
  message = str(caught.value)
  assert message.startswith("checkpoint 4") and str(workdir / "checkpoints" / "4") in message
  assert message.count("\n") == 0 and len(message) < 600, message
  with caplog.at_level(logging.WARNING):
    run = resolve(config).setup(str(workdir))
  assert run.restored_step == 2 and int(run.state.step) == 2
  assert list(run.checkpointer.rejected) == [4]
  assert "checkpoint 4" in caplog.text and "using checkpoint 2" in caplog.text


def test_training_resumes_from_the_previous_checkpoint_and_rewrites_its_metrics(trained, tmp_path):
  """Issues 20.3 and 20.5: the corrupt one is set aside; re-run steps are not logged twice."""
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  _truncate(str(workdir / "checkpoints" / "4" / "state"))
  assert metric_steps(workdir) == [1, 2, 3, 4]
  summary = commands.train(small_config(steps=6, checkpoint_every=2), str(workdir), verbose=False)
  assert (summary["start_step"], summary["final_step"]) == (2, 6)
  assert metric_steps(workdir) == [1, 2, 3, 4, 5, 6]
  assert (workdir / "rejected_checkpoints" / "4").is_dir()
  assert checkpointing.Checkpointer(str(workdir)).all_steps() == [4, 6]


def test_a_run_without_a_usable_checkpoint_stops(trained, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(trained, workdir)
  for step in (2, 4):
    _delete_manifest(str(workdir / "checkpoints" / str(step) / "state"))
  with pytest.raises(
    checkpointing.CheckpointError, match="no usable checkpoint.*checkpoint 4.*checkpoint 2"
  ):
    commands.train(small_config(steps=6, checkpoint_every=2), str(workdir), verbose=False)


def test_a_finished_run_says_so(trained):
  before = metric_steps(trained)
  summary = commands.train(small_config(steps=4, checkpoint_every=2), str(trained), verbose=False)
  assert summary["already_finished"] and summary["final_step"] == 4
  assert np.isfinite(summary["final_loss"]) and metric_steps(trained) == before


def test_resumed_metrics_drop_the_records_after_the_checkpoint(tmp_path):
  """Issue 20.5: a crash after logging steps 5-6 but before checkpoint 6 is complete."""
  commands.train(small_config(steps=6, checkpoint_every=4), str(tmp_path), verbose=False)
  shutil.rmtree(tmp_path / "checkpoints" / "6")
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 7, "lo')  # a line cut short
  summary = commands.train(small_config(steps=6, checkpoint_every=4), str(tmp_path), verbose=False)
  assert summary["start_step"] == 4
  assert metric_steps(tmp_path) == [1, 2, 3, 4, 5, 6]
