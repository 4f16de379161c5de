"""Training metrics: throughput and MFU, JSON lines, TensorBoard event files and a progress line."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax

from hope_jax._durations import format_duration

# Dense bf16 peak FLOP/s per device, matched as a substring of jax's device_kind (first match wins).
PEAK_FLOPS: tuple[tuple[str, float], ...] = (
  ("H200", 989e12),
  ("H100", 989e12),
  ("GH200", 989e12),
  ("A100", 312e12),
  ("L4", 121e12),
  ("A10G", 125e12),
  ("V100", 125e12),
  ("B200", 2250e12),
  ("TPU v6", 918e12),
  ("TPU v5p", 459e12),
  ("TPU v5 lite", 197e12),
  ("TPU v5e", 197e12),
  ("TPU v5", 459e12),
  ("TPU v4", 275e12),
  ("TPU v3", 123e12),
)


def peak_flops_per_device(device: jax.Device | None = None, *, override: float = 0.0) -> float:
  """Returns the device's peak dense bf16 FLOP/s (override if > 0); 0 when unknown (e.g. CPU)."""
  if override > 0:
    return float(override)
  kind = (device or jax.devices()[0]).device_kind
  for key, flops in PEAK_FLOPS:
    if key.lower() in kind.lower():
      return flops
  return 0.0


def throughput(
  *, tokens: int, seconds: float, flops_per_token: float, num_devices: int, peak_flops: float
) -> dict[str, float]:
  """Returns tokens/s, TFLOP/s per device and MFU (0 when the peak is unknown)."""
  tokens_per_s = tokens / seconds if seconds > 0 else 0.0
  flops_per_device = tokens_per_s * flops_per_token / max(num_devices, 1)
  return {
    "tokens_per_s": tokens_per_s,
    "tflops_per_device": flops_per_device / 1e12,
    "mfu": flops_per_device / peak_flops if peak_flops > 0 else 0.0,
  }


def drop_records_after(path: str, step: int) -> int:
  """Rewrites a metrics.jsonl without its records past ``step`` (atomically); returns how many."""
  if not os.path.exists(path):
    return 0
  with open(path, encoding="utf-8") as f:
    lines = f.readlines()
  kept = []
  for line in lines:
    try:
      record_step = int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # a line cut short by a crash: drop it
      continue
    if record_step <= step:
      kept.append(line if line.endswith("\n") else line + "\n")
  if len(kept) == len(lines):
    return 0
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.writelines(kept)
  os.replace(path + ".tmp", path)
  return len(lines) - len(kept)


class MetricsWriter:
  """Writes scalar metrics to DIR/metrics.jsonl and TensorBoard event files (process 0 only).

  ``resume_step`` (a run restored from that step) drops the records of later steps, which the run
  is about to redo, so re-run steps replace their records instead of repeating them.
  """

  def __init__(
    self, workdir: str, *, tensorboard: bool = True, enabled: bool = True, resume_step: int = 0
  ):
    self.enabled = enabled
    self._jsonl = None
    self._tb = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "metrics.jsonl")
    drop_records_after(path, resume_step)
    self._jsonl = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open until close()
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=import-outside-toplevel

      # purge_step: TensorBoard hides the earlier files' events from this step on.
      self._tb = SummaryWriter(
        os.path.join(workdir, "tensorboard"), purge_step=resume_step + 1 if resume_step else None
      )

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    """Appends one record; non-finite values are written as strings so the file stays JSON."""
    if not self.enabled:
      return
    record: dict[str, float | str] = {"step": int(step), "time": time.time()}
    for key, value in metrics.items():
      value = float(value)
      record[key] = value if math.isfinite(value) else str(value)
      if self._tb is not None:
        self._tb.add_scalar(key, value, int(step))
    assert self._jsonl is not None  # opened in __init__ whenever enabled
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()

  def close(self) -> None:
    """Flushes and closes the files."""
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None


class Progress:
  """A progress bar on a terminal, a compact line per interval otherwise."""

  def __init__(
    self,
    total_steps: int,
    *,
    stream=None,
    enabled: bool = True,
    clock: Callable[[], float] = time.monotonic,
  ):
    self.total = total_steps
    self.stream = stream or sys.stderr
    self.enabled = enabled
    self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
    self.clock = clock
    self._first: tuple[int, float] | None = None  # (step, time) of the first update: compiled

  def eta_seconds(self, step: int) -> float | None:
    """Seconds left at the pace since the first update (which carries the compile), or None."""
    now = self.clock()
    if self._first is None:
      self._first = (step, now)
      return None
    first_step, first_time = self._first
    if step <= first_step:
      return None
    return (now - first_time) / (step - first_step) * max(self.total - step, 0)

  def update(self, step: int, metrics: Mapping[str, float]) -> None:
    """Shows the step and a few metrics."""
    if not self.enabled:
      return
    parts = [f"step {step}/{self.total}"]
    for key, fmt in (
      ("loss", "{:.4f}"),
      ("grad_norm", "{:.3f}"),
      ("learning_rate", "{:.2e}"),
      ("tokens_per_s", "{:,.0f} tok/s"),
      ("mfu", "MFU {:.1%}"),
    ):
      if key in metrics and not (key == "mfu" and not metrics[key]):
        parts.append(
          (key + " " if key in ("loss", "grad_norm", "learning_rate") else "")
          + fmt.format(metrics[key])
        )
    eta = self.eta_seconds(step)
    if eta is not None and step < self.total:
      parts.append(f"ETA {format_duration(eta)}")
    line = " | ".join(parts)
    if self.tty:
      width = 24
      done = int(width * step / max(self.total, 1))
      self.stream.write(f"\r[{'#' * done}{'.' * (width - done)}] {line}\033[K")
      if step >= self.total:
        self.stream.write("\n")
    else:
      self.stream.write(line + "\n")
    self.stream.flush()
