"""Command line: ``python -m hope_jax {train,evaluate,table,demo} ...`` (also the ``hope-jax`` script).

    python -m hope_jax train --config=configs/tiny_cpu.py --workdir=DIR [--config.train.steps=50]
    python -m hope_jax evaluate --config=configs/tiny_cpu.py --workdir=DIR
    python -m hope_jax table DIR [DIR ...] --out=FILE.md
    python -m hope_jax demo [--workdir=DIR]
"""

from __future__ import annotations

import sys
from typing import Callable

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "A config file in configs/ (a module with get_config()); "
    "override fields with --config.<key>=<value>.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, eval/.")
_OUT = flags.DEFINE_string("out", None, "table: the markdown file to write (CSV and PNG beside it).")
_QUIET = flags.DEFINE_bool("quiet", False, "No progress output.")


def _require(value, name: str, command: str):
  if not value:
    raise app.UsageError(f"'{command}' needs --{name}")
  return value


def _train(args: list[str]) -> None:
  from hope_jax.config import commands  # pylint: disable=import-outside-toplevel
  config = _require(_CONFIG.value, "config", "train")
  summary = commands.train(config, _require(_WORKDIR.value, "workdir", "train"),
                        verbose=not _QUIET.value)
  print(f"trained to step {summary['final_step']} (loss {summary['final_loss']:.4f}) "
        f"in {summary['workdir']}")


def _evaluate(args: list[str]) -> None:
  from hope_jax.config import commands  # pylint: disable=import-outside-toplevel
  config = _require(_CONFIG.value, "config", "evaluate")
  commands.evaluate(config, _require(_WORKDIR.value, "workdir", "evaluate"),
                    verbose=not _QUIET.value)


def _table(args: list[str]) -> None:
  from hope_jax.evaluation import tables  # pylint: disable=import-outside-toplevel
  if not args:
    raise app.UsageError("'table' needs at least one run directory")
  print(tables.write_tables(args, _require(_OUT.value, "out", "table")))


def _demo(args: list[str]) -> None:
  from hope_jax.cli import demo  # pylint: disable=import-outside-toplevel
  demo.run_demo(_WORKDIR.value or "workdirs/demo", verbose=not _QUIET.value)


COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "train": _train, "evaluate": _evaluate, "table": _table, "demo": _demo,
}


def _main(argv: list[str]) -> None:
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax and tfds log every file operation at INFO
  if len(argv) < 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"usage: python -m hope_jax {{{','.join(COMMANDS)}}} [flags]")
  COMMANDS[argv[1]](argv[2:])


def main() -> None:
  """Console-script entry point."""
  app.run(_main, argv=sys.argv)


if __name__ == "__main__":
  main()
