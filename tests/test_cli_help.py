"""`python -m hope_jax --help` and each command's --help say what it does and its main options."""

from __future__ import annotations

import subprocess
import sys

from hope_jax.cli import help as cli_help
from hope_jax.cli import main as cli_main


def test_every_command_has_help():
  assert set(cli_help.COMMANDS_HELP) == set(cli_main.COMMANDS)


def run(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "hope_jax", *args],
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )


def test_help_lists_the_commands_and_a_command_its_options():
  overview = run("--help")
  assert overview.returncode == 0
  assert all(f"\n  {name} " in overview.stdout for name in cli_main.COMMANDS)
  train = run("train", "--config=configs/tiny_cpu.py", "--help")
  assert train.returncode == 0
  assert "--workdir=DIR" in train.stdout and "75 interrupted" in train.stdout
  assert run().returncode == 2  # no command: the overview, as a usage error
