"""The training loop: data, sharded train step, checkpoints, metrics, preemption and NaN handling."""

from __future__ import annotations

import json
import math
import os
import platform
import time

import jax
from absl import logging

from hope_jax import model
from hope_jax._version import __version__
from hope_jax.data import batches
from hope_jax.data.config import DataConfig
from hope_jax.parallel import sharding
from hope_jax.training import checkpointing, metrics, optim, preemption
from hope_jax.training import setup as training_setup
from hope_jax.training import step as train_step
from hope_jax.training.config import OptimizerConfig, TrainConfig


class TrainingDiverged(RuntimeError):
  """Raised when the loss or gradient norm becomes NaN or Inf; names the last good checkpoint."""


TrainingInterrupted = preemption.TrainingInterrupted


def record_run_info(workdir: str, cfg: model.TransformerConfig) -> None:
  """Writes the package version, the devices and model facts into workdir/run_info.json."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  devices = jax.devices()
  info = {
    "hope_jax": __version__,
    "jax": jax.__version__,
    "python": platform.python_version(),
    "backend": jax.default_backend(),
    "process_count": jax.process_count(),
    "device_count": len(devices),
    "device_kind": devices[0].device_kind,
    "devices": [str(d) for d in devices[:64]],
    "num_params": model.num_params(cfg),
    "num_nonembedding_params": model.num_params(cfg, non_embedding=True),
    "encoder": cfg.encoder,
    "rotated_bands": cfg.encoding.num_rotated_bands,
    "train_length": cfg.train_length,
    "time": time.strftime("%Y-%m-%d %H:%M:%S"),
  }
  with open(os.path.join(workdir, "run_info.json"), "w", encoding="utf-8") as f:
    json.dump(info, f, indent=2)


def _check_finite(
  pending: list[tuple[int, dict]], last_good: int | None
) -> list[tuple[float, float]]:
  """Fetches pending steps' (loss, grad_norm); raises TrainingDiverged at the first non-finite one.

  ``pending`` holds (step number as logged, the step's device metrics); one transfer for all.
  """
  values = jax.device_get([(m["loss"], m["grad_norm"], m["finite"]) for _, m in pending])
  fetched = []
  for (done, _), (loss, grad_norm, finite) in zip(pending, values):
    loss, grad_norm = float(loss), float(grad_norm)
    if not (finite and math.isfinite(loss) and math.isfinite(grad_norm)):
      raise TrainingDiverged(
        f"training diverged at step {done}: loss {loss}, grad_norm {grad_norm} (its update was "
        f"not applied); {_last_good(last_good)}"
      )
    fetched.append((loss, grad_norm))
  return fetched


def _last_good(step: int | None) -> str:
  """Names the last checkpoint known to be finite."""
  return (
    f"the last good checkpoint is step {step}"
    if step is not None
    else "no checkpoint was saved before it"
  )


def train(
  model_config: model.TransformerConfig,
  mesh_config: sharding.MeshConfig,
  data: DataConfig,
  train_config: TrainConfig,
  optimizer_config: OptimizerConfig,
  *,
  workdir: str,
  seed: int = 0,
  distributed: bool | str = "auto",
  verbose: bool = True,
) -> dict:
  """Trains (or resumes) a model; returns a summary of the run.

  Raises TrainingDiverged at a non-finite loss or gradient norm (checked on every step, read at
  log and save steps), and TrainingInterrupted after SIGTERM or SIGINT, once the state reached
  is saved; running again resumes.  A run already at train.steps returns with already_finished.
  """
  t = train_config
  run = training_setup.setup(
    model_config,
    mesh_config,
    optimizer=optim.make_optimizer(optimizer_config),
    seed=seed,
    init_on=t.init_on,
    batch_size=t.micro_batch_size,
    workdir=workdir,
    keep_checkpoints=t.keep_checkpoints,
    async_checkpoints=t.async_checkpoints,
    distributed=distributed,
  )
  cfg = run.model_config
  ckpt = run.checkpointer
  assert ckpt is not None  # setup makes one whenever there is a workdir
  start = int(jax.device_get(run.state.step))
  if ckpt.rejected:
    moved = ckpt.set_aside(sorted(ckpt.rejected))
    logging.warning(
      "resuming from checkpoint %d; moved the unusable one(s) to %s", start, ", ".join(moved)
    )
  if start >= t.steps:
    loss = (ckpt.metadata(start) or {}).get("loss", float("nan"))
    ckpt.close()
    return {
      "workdir": workdir,
      "start_step": start,
      "final_step": start,
      "stopped_early": False,
      "already_finished": True,
      "history": [],
      "final_loss": loss,
    }
  if run.restored_step is None:  # a resumed run keeps the record of how it started
    record_run_info(workdir, cfg)
  tok = data.load_tokenizer()
  split = data.load_split(
    "train", tok, vocab_size=cfg.vocab_size, progress=verbose and jax.process_index() == 0
  )
  if split.manifest is not None and jax.process_index() == 0:  # the corpus behind the run
    with open(os.path.join(workdir, "data_manifest.json"), "w", encoding="utf-8") as f:
      json.dump(split.manifest, f, indent=1)
  schedule = optim.learning_rate_schedule(optimizer_config)
  step_fn = train_step.make_train_step(
    run.graphdef,
    run.optimizer,
    mesh=run.mesh,
    state_shardings=run.shardings,
    rules=run.rules,
    grad_accum_steps=t.grad_accum_steps,
  )
  is_main = jax.process_index() == 0
  single_process = jax.process_count() == 1
  writer = metrics.MetricsWriter(
    workdir, tensorboard=t.tensorboard, enabled=is_main, resume_step=start
  )
  progress = metrics.Progress(t.steps, enabled=verbose and is_main)
  seq_len = data.seq_len
  flops_per_token = model.flops_per_token(cfg, seq_len)
  peak = metrics.peak_flops_per_device(override=t.peak_flops_per_device)
  last_good = run.restored_step
  state = run.state
  pending: list[tuple[int, dict]] = []
  history: list[dict] = []
  interval_start, interval_steps = time.perf_counter(), 0
  stopped_early = False
  try:
    with preemption.SignalCatcher() as signals:
      for step in range(start, t.steps):
        local = batches.train_batch(
          split,
          seed=seed,
          step=step,
          batch_size=t.batch_size,
          seq_len=seq_len,
          process_index=jax.process_index(),
          process_count=jax.process_count(),
          with_segments=data.with_segments,
        )
        state, step_metrics = step_fn(state, train_step.global_batch(local, run.mesh, run.rules))
        done = step + 1  # the step number logs, metrics and checkpoints use
        pending.append((done, step_metrics))
        interval_steps += 1
        log_now = done % t.log_every == 0 or done == t.steps
        # Processes agree on a signal at log steps (a collective); alone, every step is free.
        interrupted = (
          signals.requested
          if single_process
          else log_now and preemption.any_process(signals.requested)
        )
        stop = interrupted or (t.stop_after > 0 and done >= t.stop_after)
        log_now = log_now or stop
        save_now = done % t.checkpoint_every == 0 or done == t.steps or stop
        if log_now or save_now:
          fetched = _check_finite(pending, last_good)
          pending = []
        if log_now:
          elapsed = time.perf_counter() - interval_start
          record = {
            "loss": fetched[-1][0],
            "grad_norm": fetched[-1][1],
            "learning_rate": float(schedule(step)),
            **metrics.throughput(
              tokens=interval_steps * t.batch_size * seq_len,
              seconds=elapsed,
              flops_per_token=flops_per_token,
              num_devices=jax.device_count(),
              peak_flops=peak,
            ),
          }
          writer.write(done, record)
          progress.update(done, record)
          history.append({"step": done, **record})
          interval_start, interval_steps = time.perf_counter(), 0
        if save_now:
          try:
            ckpt.save(done, state, metadata={"loss": fetched[-1][0]})
          except checkpointing.NonFiniteStateError as e:
            raise TrainingDiverged(f"{e}; {_last_good(last_good)}") from None
          last_good = done
        if stop:
          stopped_early = done < t.steps
          break
      if interrupted and done < t.steps:
        ckpt.wait()
        summary = _summary(workdir, start, done, True, history)
        raise preemption.TrainingInterrupted(
          f"training was interrupted by {signals.signal_name} at step {done} of {t.steps}; "
          f"checkpoint {done} is saved in {workdir}: run the same command to resume",
          step=done,
          signal_name=signals.signal_name,
          summary=summary,
        )
  finally:
    ckpt.close()
    writer.close()
  return _summary(workdir, start, int(jax.device_get(state.step)), stopped_early, history)


def _summary(
  workdir: str, start: int, final: int, stopped_early: bool, history: list[dict]
) -> dict:
  """The summary train() returns."""
  return {
    "workdir": workdir,
    "start_step": start,
    "final_step": final,
    "stopped_early": stopped_early,
    "already_finished": False,
    "history": history,
    "final_loss": history[-1]["loss"] if history else float("nan"),
  }
