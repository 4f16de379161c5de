"""What ``python -m hope_jax --help`` and ``python -m hope_jax COMMAND --help`` print."""

from __future__ import annotations

COMMANDS_HELP: dict[str, tuple[str, str]] = {
  "train": (
    "Trains a model, or resumes the run in --workdir from its newest usable checkpoint.",
    """  --config=FILE[:ARG]   a config file (configs/tiny_cpu.py:hope, configs/model_110m.py, ...)
  --config.KEY=VALUE    any field of hope_jax/config/base.py, e.g. --config.train.steps=500,
                        --config.model.encoder=hope, --config.data.seq_len=1024
  --workdir=DIR         the run: config.json, checkpoints/, metrics.jsonl (a gs:// path works)
  --quiet               no progress line
Exit status: 0 finished, 75 interrupted by SIGTERM/SIGINT (saved; rerun to resume),
1 diverged or refused (a config that contradicts the run, a locked workdir, bad data).""",
  ),
  "evaluate": (
    "Evaluates the run in --workdir: perplexity by length, copy, passkey, recall, attention.",
    """  --config=FILE         the run's config (model fields must match its config.json)
  --workdir=DIR         the run; results go to DIR/eval*/
  --config.eval.evaluations='("perplexity",)'   which evaluations
  --config.eval.perplexity.lengths='(1,2,4,8)'  lengths as multiples of L
  --config.eval.scaling=yarn|ntk|linear|llama3  context extension at evaluation time
  --config.eval.logn_scaling=True               log-n query scaling""",
  ),
  "table": (
    "Merges the evaluations of several runs into markdown and CSV tables and figures.",
    """  DIR [DIR ...]         run directories (seeds of one configuration share a row)
  --out=FILE.md         the markdown table; .csv and .png files are written beside it""",
  ),
  "demo": (
    "Evaluates the shipped RoPE and HoPE models at 1-32 x their training length, on this machine.",
    """  --workdir=DIR         where the runs and the table go (default workdirs/demo)
  --from_scratch        train two tiny models here instead (a few minutes)""",
  ),
  "convert": (
    "Makes a step-0 run from a Hugging Face Llama/Mistral directory or from another run.",
    """  --source=DIR          a Hugging Face directory (config.json + safetensors) or a run
  --workdir=DIR         the new run (must not hold checkpoints)
  --config=FILE         everything but the model for an HF source; the new config for a run
                        (e.g. its config.py with --config.model.encoder=hope)""",
  ),
  "export": (
    "Writes a run as a Hugging Face directory (RoPE as Llama, HoPE as Phi-3) or a release.",
    """  --workdir=DIR         the run (its newest checkpoint)
  --out=DIR             the directory to write
  --format=hf|release   hf (default), or config.json + params.safetensors (small; no optimizer state)
  --dtype=bfloat16      the release's parameter dtype (float32, bfloat16, float16)""",
  ),
}


def usage() -> str:
  """The overview: every command and what it does."""
  width = max(map(len, COMMANDS_HELP))
  lines = [
    "usage: python -m hope_jax COMMAND [flags]   (or hope-jax COMMAND)",
    "",
    "HoPE and its baselines in JAX: train, evaluate and compare long-context models.",
    "",
    "commands:",
  ]
  lines += [f"  {name:<{width}}  {summary}" for name, (summary, _) in COMMANDS_HELP.items()]
  lines += [
    "",
    "python -m hope_jax COMMAND --help lists a command's main options; --helpfull lists "
    "every flag.",
  ]
  return "\n".join(lines)


def command_help(name: str) -> str:
  """One command: what it does and its main options."""
  summary, options = COMMANDS_HELP[name]
  return f"usage: python -m hope_jax {name} [flags]\n\n{summary}\n\noptions:\n{options}"
