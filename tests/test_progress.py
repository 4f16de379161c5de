"""The training progress line: the step, a few metrics and an ETA at the pace after compilation."""

from __future__ import annotations

import io

import pytest

from hope_jax.training import metrics


@pytest.mark.parametrize("seconds, text", [(45, "45s"), (187, "3m07s"), (7500, "2h05m")])
def test_format_duration(seconds, text):
  assert metrics.format_duration(seconds) == text


def test_eta_counts_from_the_first_update_not_the_compile():
  times = iter([100.0, 130.0, 150.0])  # steps 1–10 (with the compile) are not timed
  stream = io.StringIO()
  progress = metrics.Progress(100, stream=stream, clock=lambda: next(times))
  progress.update(10, {"loss": 3.0})
  progress.update(20, {"loss": 2.5})
  progress.update(30, {"loss": 2.0})
  lines = stream.getvalue().splitlines()
  assert "ETA" not in lines[0]
  assert lines[1].endswith("ETA 4m00s")  # (130 − 100) s / 10 steps × 80 steps left
  assert lines[2].endswith("ETA 2m55s")  # (150 − 100) s / 20 steps × 70 steps left
