"""The training loop: data, sharded train step, checkpoints, metrics, preemption and NaN handling."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from typing import Any

import jax
import ml_collections
import optax
from absl import logging

from hope_jax._version import __version__
from hope_jax.data import batches
from hope_jax.training import checkpointing
from hope_jax.config import base as config_base
from hope_jax.parallel import distributed
from hope_jax.training import metrics
from hope_jax import model
from hope_jax.training import optim
from hope_jax.training import preemption
from hope_jax.parallel import sharding
from hope_jax.data import tokenizer
from hope_jax.training import step as train_step


class TrainingDiverged(RuntimeError):
  """Raised when the loss or gradient norm becomes NaN or Inf; names the last good checkpoint."""


TrainingInterrupted = preemption.TrainingInterrupted


def model_config(config: ml_collections.ConfigDict) -> model.TransformerConfig:
  """Builds the model's config from the run config (training length and encoder resolved)."""
  m = config.model
  fields = {k: m[k] for k in m.keys() if k not in ("encoder_params", "train_length")}
  fields["train_length"] = config_base.train_length(config)
  fields["encoder_params"] = config_base.encoder_kwargs(m.encoder, m.encoder_params)
  if not m.head_dim:
    fields["head_dim"] = m.embed_dim // m.num_heads
  return model.TransformerConfig.from_mapping(fields)


def data_spec(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Returns the source fields of config.data that identify a dataset."""
  d = config.data
  return {k: d[k] for k in ("source", "path", "name", "text_field", "data_dir",
                            "validation_percent")}


def load_split(config: ml_collections.ConfigDict, split: str,
               tok: tokenizer.Tokenizer | None = None) -> batches.TokenizedSplit:
  """Tokenizes (or loads from the cache) one split of the configured dataset."""
  tok = tok or tokenizer.load_tokenizer(config.data.tokenizer)
  if tok.vocab_size > config.model.vocab_size:
    raise ValueError(f"config.model.vocab_size={config.model.vocab_size} is smaller than the "
                     f"tokenizer's vocabulary ({tok.vocab_size}, {config.data.tokenizer!r})")
  return batches.tokenize_split(data_spec(config), split, tok,
                                cache_dir=config.data.cache_dir or None)


@dataclasses.dataclass
class Run:
  """Everything a training or evaluation run builds before its first step."""
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  rules: Any
  model_config: model.TransformerConfig
  optimizer: optax.GradientTransformation
  graphdef: Any
  state: Any
  shardings: Any
  checkpointer: checkpointing.Checkpointer | None  # None without a workdir (benchmarks)
  restored_step: int | None = None  # the checkpoint the state came from; None = fresh


def setup(config: ml_collections.ConfigDict, workdir: str | None, *, step: int | None = None,
          fresh_ok: bool = True) -> Run:
  """Validates the config, builds the mesh and the sharded state: checkpoint ``step`` if saved.

  ``step=None`` restores the latest checkpoint; with none saved the state is fresh
  (``config.train.init_on``), or FileNotFoundError when not ``fresh_ok``.  A restored state is
  read straight onto its shardings, with no fresh state built first.  With ``workdir=None``
  nothing is read or written: fresh state, no checkpointer (benchmarks).
  """
  config_base.validate(config)
  if workdir is None and step is not None:
    raise ValueError(f"step={step} names a checkpoint, which needs a workdir; got workdir=None")
  distributed.initialize_distributed({"on": True, "off": False}.get(config.distributed, "auto"))
  mesh = sharding.make_mesh(sharding.MeshConfig.from_mapping(config.mesh))
  rules = sharding.freeze_rules(config.mesh.rules.to_dict())
  cfg = model_config(config)
  sharding.check_model_sharding(cfg, mesh, rules)
  sharding.check_batch(config.train.batch_size // config.train.grad_accum_steps, mesh, rules)
  optimizer = optim.make_optimizer(config)
  ckpt = None
  if workdir is not None:
    ckpt = checkpointing.Checkpointer(workdir, keep=config.train.keep_checkpoints,
                                      async_save=config.train.async_checkpoints)
  if ckpt is None or (step is None and ckpt.latest_step() is None):
    if not fresh_ok:
      raise FileNotFoundError(f"no checkpoint in {workdir}/checkpoints to restore; train first")
    graphdef, state, shardings = train_step.create_train_state(
        cfg, optimizer, mesh=mesh, rules=rules, seed=config.seed, init_on=config.train.init_on)
  else:
    graphdef, abstract, shardings = train_step.abstract_train_state(cfg, optimizer, mesh=mesh,
                                                                    rules=rules)
    step, state = ckpt.restore(abstract, step=step)  # step=None: the newest usable one
  return Run(config, mesh, rules, cfg, optimizer, graphdef, state, shardings, ckpt, step)


def record_run_info(config: ml_collections.ConfigDict, workdir: str,
                    cfg: model.TransformerConfig) -> None:
  """Writes the resolved config, the package version and the devices into the workdir."""
  if jax.process_index() != 0:
    return
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
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


def _check_finite(pending: list[tuple[int, dict]], last_good: int | None
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
          f"not applied); {_last_good(last_good)}")
    fetched.append((loss, grad_norm))
  return fetched


def _last_good(step: int | None) -> str:
  """Names the last checkpoint known to be finite."""
  return (f"the last good checkpoint is step {step}" if step is not None
          else "no checkpoint was saved before it")


def train(config: ml_collections.ConfigDict, workdir: str, *, verbose: bool = True) -> dict:
  """Trains (or resumes) a model as the config says; returns a summary of the run.

  Raises TrainingDiverged at a non-finite loss or gradient norm (checked on every step, read at
  log and save steps), and TrainingInterrupted after SIGTERM or SIGINT, once the state reached
  is saved; running again resumes.  A run already at train.steps returns with already_finished.
  """
  run = setup(config, workdir)
  cfg, t = run.model_config, config.train
  ckpt = run.checkpointer
  start = int(jax.device_get(run.state.step))
  if ckpt.rejected:
    moved = ckpt.set_aside(sorted(ckpt.rejected))
    logging.warning("resuming from checkpoint %d; moved the unusable one(s) to %s", start,
                    ", ".join(moved))
  if start >= t.steps:
    loss = (ckpt.metadata(start) or {}).get("loss", float("nan"))
    ckpt.close()
    return {"workdir": workdir, "start_step": start, "final_step": start, "stopped_early": False,
            "already_finished": True, "history": [], "final_loss": loss}
  record_run_info(config, workdir, cfg)
  tok = tokenizer.load_tokenizer(config.data.tokenizer)
  split = load_split(config, "train", tok)
  schedule = optim.learning_rate_schedule(config)
  step_fn = train_step.make_train_step(run.graphdef, run.optimizer, mesh=run.mesh,
                                       state_shardings=run.shardings, rules=run.rules,
                                       grad_accum_steps=t.grad_accum_steps)
  is_main = jax.process_index() == 0
  single_process = jax.process_count() == 1
  writer = metrics.MetricsWriter(workdir, tensorboard=t.tensorboard, enabled=is_main,
                                 resume_step=start)
  progress = metrics.Progress(t.steps, enabled=verbose and is_main)
  seq_len = config.data.seq_len
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
            split, seed=config.seed, step=step, batch_size=t.batch_size, seq_len=seq_len,
            process_index=jax.process_index(), process_count=jax.process_count(),
            with_segments=config.data.with_segments)
        state, step_metrics = step_fn(state, train_step.global_batch(local, run.mesh, run.rules))
        done = step + 1  # the step number logs, metrics and checkpoints use
        pending.append((done, step_metrics))
        interval_steps += 1
        log_now = done % t.log_every == 0 or done == t.steps
        # Processes agree on a signal at log steps (a collective); alone, every step is free.
        interrupted = (signals.requested if single_process
                       else log_now and preemption.any_process(signals.requested))
        stop = interrupted or (t.stop_after and done >= t.stop_after)
        log_now = log_now or stop
        save_now = done % t.checkpoint_every == 0 or done == t.steps or stop
        if log_now or save_now:
          fetched = _check_finite(pending, last_good)
          pending = []
        if log_now:
          elapsed = time.perf_counter() - interval_start
          record = {
              "loss": fetched[-1][0], "grad_norm": fetched[-1][1],
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
            step=done, signal_name=signals.signal_name, summary=summary)
  finally:
    ckpt.close()
    writer.close()
  return _summary(workdir, start, int(jax.device_get(state.step)), stopped_early, history)


def _summary(workdir: str, start: int, final: int, stopped_early: bool,
             history: list[dict]) -> dict:
  """The summary train() returns."""
  return {"workdir": workdir, "start_step": start, "final_step": final,
          "stopped_early": stopped_early, "already_finished": False, "history": history,
          "final_loss": history[-1]["loss"] if history else float("nan")}
