"""Command line: ``python -m hope_jax {train,evaluate,table,demo,convert,export} ...`` (also ``hope-jax``).

python -m hope_jax train --config=configs/tiny_cpu.py --workdir=DIR [--config.train.steps=50]
python -m hope_jax evaluate --config=configs/tiny_cpu.py --workdir=DIR
python -m hope_jax table DIR [DIR ...] --out=FILE.md
python -m hope_jax demo [--workdir=DIR] [--from_scratch]
python -m hope_jax convert --source=HF_DIR_OR_RUN --workdir=NEW_RUN [--config=...]
python -m hope_jax export --workdir=RUN --out=HF_DIR [--format=release --dtype=bfloat16]
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  None,
  "A config file in configs/ (a module with get_config()); "
  "override fields with --config.<key>=<value>.",
  lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, eval/.")
_OUT = flags.DEFINE_string(
  "out",
  None,
  "table: the markdown file to write (CSV and PNG beside it); "
  "export: the Hugging Face directory to write.",
)
_SOURCE = flags.DEFINE_string(
  "source",
  None,
  "convert: a Hugging Face model directory, or a run "
  "directory whose parameters start a new run under --config.",
)
_QUIET = flags.DEFINE_bool("quiet", False, "No progress output.")
_FROM_SCRATCH = flags.DEFINE_bool(
  "from_scratch", False, "demo: train two tiny models here instead of evaluating the shipped ones."
)
_FORMAT = flags.DEFINE_enum(
  "format",
  "hf",
  ["hf", "release"],
  "export: a Hugging Face directory (hf) or a release: config.json + params.safetensors (release).",
)
_DTYPE = flags.DEFINE_enum(
  "dtype", "bfloat16", ["float32", "bfloat16", "float16"], "export --format=release: the dtype."
)


def _require(value, name: str, command: str):
  if not value:
    raise app.UsageError(f"'{command}' needs --{name}")
  return value


@contextlib.contextmanager
def _reported_errors() -> Iterator[None]:
  """Turns the errors a user can act on into one line on stderr and exit status 1."""
  # pylint: disable=import-outside-toplevel
  from hope_jax.config.identity import RunMismatch
  from hope_jax.data.local_files import DataFileError
  from hope_jax.training.checkpointing import CheckpointError
  from hope_jax.training.loop import TrainingDiverged
  from hope_jax.training.workdir_lock import WorkdirLocked

  try:
    yield
  except (RunMismatch, DataFileError, CheckpointError, TrainingDiverged, WorkdirLocked) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


def _train(args: list[str]) -> None:
  """Trains; exits 75 (preemption.EXIT_INTERRUPTED) after SIGTERM/SIGINT, 1 on a refused run."""
  # pylint: disable=import-outside-toplevel
  from hope_jax.config import commands
  from hope_jax.training import preemption

  config = _require(_CONFIG.value, "config", "train")
  workdir = _require(_WORKDIR.value, "workdir", "train")
  try:
    with _reported_errors():
      summary = commands.train(config, workdir, verbose=not _QUIET.value)
  except preemption.TrainingInterrupted as e:
    print(f"interrupted: {e}", file=sys.stderr)
    sys.exit(preemption.EXIT_INTERRUPTED)
  if summary["already_finished"]:
    print(
      f"the run in {summary['workdir']} had already finished: it is at step "
      f"{summary['final_step']} (train.steps={config.train.steps}; loss "
      f"{summary['final_loss']:.4f}); nothing to do"
    )
    return
  print(
    f"trained to step {summary['final_step']} (loss {summary['final_loss']:.4f}) "
    f"in {summary['workdir']}"
  )


def _evaluate(args: list[str]) -> None:
  from hope_jax.config import commands  # pylint: disable=import-outside-toplevel

  config = _require(_CONFIG.value, "config", "evaluate")
  with _reported_errors():
    commands.evaluate(
      config, _require(_WORKDIR.value, "workdir", "evaluate"), verbose=not _QUIET.value
    )


def _table(args: list[str]) -> None:
  from hope_jax.evaluation import tables  # pylint: disable=import-outside-toplevel

  if not args:
    raise app.UsageError("'table' needs at least one run directory")
  print(tables.write_tables(args, _require(_OUT.value, "out", "table")))


def _demo(args: list[str]) -> None:
  from hope_jax.cli import demo  # pylint: disable=import-outside-toplevel

  demo.run_demo(
    _WORKDIR.value or "workdirs/demo", from_scratch=_FROM_SCRATCH.value, verbose=not _QUIET.value
  )


def _convert(args: list[str]) -> None:
  from hope_jax.cli import interop  # pylint: disable=import-outside-toplevel

  interop.convert(
    _require(_SOURCE.value, "source", "convert"),
    _require(_WORKDIR.value, "workdir", "convert"),
    _CONFIG.value,
  )


def _export(args: list[str]) -> None:
  from hope_jax.cli import interop  # pylint: disable=import-outside-toplevel

  interop.export(
    _require(_WORKDIR.value, "workdir", "export"),
    _require(_OUT.value, "out", "export"),
    release=_FORMAT.value == "release",
    dtype=_DTYPE.value,
  )


COMMANDS: dict[str, Callable[[list[str]], None]] = {
  "train": _train,
  "evaluate": _evaluate,
  "table": _table,
  "demo": _demo,
  "convert": _convert,
  "export": _export,
}


def _main(argv: list[str]) -> None:
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)  # orbax and tfds log every file operation at INFO
  if len(argv) < 2 or argv[1] not in COMMANDS:
    raise app.UsageError(f"usage: python -m hope_jax {{{','.join(COMMANDS)}}} [flags]")
  COMMANDS[argv[1]](argv[2:])


def main() -> None:
  """Console-script entry point; ``--help`` (alone or after a command) prints what it does."""
  args = sys.argv[1:]
  if (
    not args
    or args[0] in ("-h", "--help", "help")
    or (args[0] in COMMANDS and any(a in ("-h", "--help") for a in args[1:]))
  ):
    from hope_jax.cli import help as cli_help  # pylint: disable=import-outside-toplevel

    command = args[0] if args and args[0] in COMMANDS else None
    print(cli_help.command_help(command) if command else cli_help.usage())
    sys.exit(0 if args else 2)
  app.run(_main, argv=sys.argv)


if __name__ == "__main__":
  main()
