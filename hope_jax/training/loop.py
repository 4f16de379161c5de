"""The training loop: data, sharded train step, checkpoints, metrics, preemption and NaN handling."""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import time
from typing import Any

import jax

from hope_jax import model
from hope_jax._version import __version__
from hope_jax.data import batches
from hope_jax.data.config import DataConfig
from hope_jax.parallel import sharding
from hope_jax.training import metrics
from hope_jax.training import optim
from hope_jax.training import setup as training_setup
from hope_jax.training import step as train_step
from hope_jax.training.config import OptimizerConfig, TrainConfig


class TrainingDiverged(RuntimeError):
  """Raised when the loss becomes NaN or Inf."""


def record_run_info(workdir: str, cfg: model.TransformerConfig) -> None:
  """Writes the package version, the devices and model facts into workdir/run_info.json."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  devices = jax.devices()
  info = {
      "hope_jax": __version__, "jax": jax.__version__, "python": platform.python_version(),
      "backend": jax.default_backend(), "process_count": jax.process_count(),
      "device_count": len(devices), "device_kind": devices[0].device_kind,
      "devices": [str(d) for d in devices[:64]],
      "num_params": model.num_params(cfg),
      "num_nonembedding_params": model.num_params(cfg, non_embedding=True),
      "encoder": cfg.encoder, "rotated_bands": cfg.encoding.num_rotated_bands,
      "train_length": cfg.train_length, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
  }
  with open(os.path.join(workdir, "run_info.json"), "w", encoding="utf-8") as f:
    json.dump(info, f, indent=2)


class _Preemption:
  """Turns SIGTERM into a flag the loop checks, so it can save before exiting."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: leave signals alone
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _check_finite(losses: list[tuple[int, Any]], last_checkpoint: int | None) -> list[float]:
  """Fetches pending per-step losses; raises TrainingDiverged at the first non-finite one."""
  values = [float(v) for v in jax.device_get([loss for _, loss in losses])]
  for (step, _), value in zip(losses, values):
    if not math.isfinite(value):
      where = (f"the last good checkpoint is step {last_checkpoint}" if last_checkpoint is not None
               else "no checkpoint was saved before it")
      raise TrainingDiverged(f"loss became {value} at step {step}; {where}")
  return values


def train(model_config: model.TransformerConfig, mesh_config: sharding.MeshConfig,
          data: DataConfig, train_config: TrainConfig, optimizer_config: OptimizerConfig, *,
          workdir: str, seed: int = 0, distributed: bool | str = "auto",
          verbose: bool = True) -> dict:
  """Trains (or resumes) a model; returns a summary of the run."""
  t = train_config
  run = training_setup.setup(
      model_config, mesh_config, optimizer=optim.make_optimizer(optimizer_config), seed=seed,
      init_on=t.init_on, batch_size=t.micro_batch_size, workdir=workdir,
      keep_checkpoints=t.keep_checkpoints, async_checkpoints=t.async_checkpoints,
      distributed=distributed)
  cfg = run.model_config
  if run.restored_step is None:  # a resumed run keeps the record of how it started
    record_run_info(workdir, cfg)
  tok = data.load_tokenizer()
  split = data.load_split("train", tok, vocab_size=cfg.vocab_size)
  schedule = optim.learning_rate_schedule(optimizer_config)
  step_fn = train_step.make_train_step(run.graphdef, run.optimizer, mesh=run.mesh,
                                       state_shardings=run.shardings, rules=run.rules,
                                       grad_accum_steps=t.grad_accum_steps)
  is_main = jax.process_index() == 0
  writer = metrics.MetricsWriter(workdir, tensorboard=t.tensorboard, enabled=is_main)
  progress = metrics.Progress(t.steps, enabled=verbose and is_main)
  seq_len = data.seq_len
  flops_per_token = model.flops_per_token(cfg, seq_len)
  peak = metrics.peak_flops_per_device(override=t.peak_flops_per_device)
  start = int(jax.device_get(run.state.step))
  last_checkpoint = run.checkpointer.latest_step()
  state = run.state
  pending: list[tuple[int, Any]] = []
  history: list[dict] = []
  interval_start, interval_steps = time.perf_counter(), 0
  stopped_early = False
  try:
    with _Preemption() as preemption:
      for step in range(start, t.steps):
        local = batches.train_batch(
            split, seed=seed, step=step, batch_size=t.batch_size, seq_len=seq_len,
            process_index=jax.process_index(), process_count=jax.process_count(),
            with_segments=data.with_segments)
        state, step_metrics = step_fn(state, train_step.global_batch(local, run.mesh, run.rules))
        pending.append((step, step_metrics["loss"]))
        interval_steps += 1
        done = step + 1
        stop = preemption.requested or (t.stop_after and done >= t.stop_after)
        log_now = done % t.log_every == 0 or done == t.steps or stop
        save_now = done % t.checkpoint_every == 0 or done == t.steps or stop
        if log_now or save_now:
          losses = _check_finite(pending, last_checkpoint)
          pending = []
        if log_now:
          elapsed = time.perf_counter() - interval_start
          record = {
              "loss": losses[-1], "grad_norm": float(step_metrics["grad_norm"]),
              "learning_rate": float(schedule(step)),
              **metrics.throughput(tokens=interval_steps * t.batch_size * seq_len,
                                   seconds=elapsed, flops_per_token=flops_per_token,
                                   num_devices=jax.device_count(), peak_flops=peak),
          }
          writer.write(done, record)
          progress.update(done, record)
          history.append({"step": done, **record})
          interval_start, interval_steps = time.perf_counter(), 0
        if save_now:
          run.checkpointer.save(done, state, metadata={"step": done, "loss": losses[-1]})
          last_checkpoint = done
        if stop:
          stopped_early = done < t.steps
          break
  finally:
    run.checkpointer.close()
    writer.close()
  return {"workdir": workdir, "start_step": start, "final_step": int(jax.device_get(state.step)),
          "stopped_early": stopped_early, "history": history,
          "final_loss": history[-1]["loss"] if history else float("nan")}
