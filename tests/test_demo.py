"""The demo: the shipped pretrained releases and the path that evaluates them (at reduced size)."""

from __future__ import annotations

import json
import os

import pytest

from hope_jax.cli import demo


@pytest.mark.parametrize("encoder", demo.DEMO_ENCODERS)
def test_shipped_release_records_what_was_trained(encoder):
  directory = demo.release_dir(encoder)
  with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
    config = json.load(f)
  with open(os.path.join(directory, "release.json"), encoding="utf-8") as f:
    info = json.load(f)
  assert config["model"]["encoder"] == encoder
  assert info["step"] == config["train"]["steps"] and info["dtype"] == "bfloat16"
  assert info["last_losses"][-1]["step"] == info["step"]
  assert os.path.getsize(os.path.join(directory, "params.safetensors")) < 8_000_000


def test_demo_evaluates_the_shipped_models(tmp_path, capsys):
  markdown = demo.run_demo(str(tmp_path), lengths=(1, 2), max_windows=2, verbose=False)
  printed = capsys.readouterr().out
  assert "| rope | 1 |" in markdown and "| hope | 1 |" in markdown
  assert "Measured now, at 2 × L" in printed and "times HoPE's" in printed
  assert (tmp_path / "demo_table.png").exists()


@pytest.mark.slow
def test_demo_from_scratch_trains_and_compares(tmp_path, capsys):
  markdown = demo.run_demo(
    str(tmp_path), from_scratch=True, scratch_steps=4, lengths=(1, 2), max_windows=2, verbose=False
  )
  assert "| rope | 1 |" in markdown and "| hope | 1 |" in markdown
  assert "Measured now" in capsys.readouterr().out
