"""The code extrapolation protocol: a 110M model at L = 1,024 on the GPU machine's Python sources.

Every variant has the same architecture (the ``110m`` preset: 12 × 768, 12 heads of 64, SwiGLU
2,048, vocabulary 16,384), data order, steps and optimizer; the corpus is the ``source_tree`` of
the machine's installed packages (``sysconfig:purelib``: one document per package, validation
packages chosen by a hash of the name; the run's ``data_manifest.json`` names the corpus exactly).
One run trains (3,500 steps × 64 × 1,024 = 229M tokens, about 6 minutes on one H100/H200) and is
evaluated from 1,024 to 65,536 tokens inside one command of at most 10 minutes.

    python -m hope_jax train    --config=configs/experiments/code_extrapolation.py:hope,seed=1 --workdir=W
    python -m hope_jax evaluate --config=configs/experiments/code_extrapolation.py:hope,seed=1 --workdir=W

The argument is that of configs/experiments/extrapolation.py: ``VARIANT[,seed=N][,scaling=NAME]
[,logn=1][,evals=A+B][,lengths=1+2+…]``, plus ``long=N`` (N in LONG_MULTIPLES): perplexity at
N × L alone (up to 1,048,576 tokens, the layer-by-layer pass) over at most LONG_WINDOWS windows
of the longest validation packages, into DIR/eval_long-N, which tables merge into the run's row;
one evaluation per length, so a command's deadline keeps the lengths that finished.
"""

from hope_jax.config import base as config_base


def _prose_protocol():
  return config_base.sibling_config(__file__, "extrapolation.py")


VARIANTS = _prose_protocol().VARIANTS
# Columns past 64 × L (131,072 … 1,048,576 tokens): one window of 1,048,576 takes 51 s on an
# H100 (benchmarks/RESULTS.md 1.4), and only the longest validation packages hold one.
LONG_MULTIPLES = (128, 256, 512, 1024)
LONG_WINDOWS = 2


def _split_long(arg: str | None) -> tuple[str, int]:
  """Returns (arg without its 'long=N' part, N or 0); N must be one of LONG_MULTIPLES."""
  parts = (arg or "hope").split(",")
  longs = [p for p in parts if p.startswith("long=")]
  rest = ",".join(p for p in parts if not p.startswith("long="))
  if not longs:
    return rest, 0
  value = longs[-1].split("=", 1)[1]
  if len(longs) > 1 or not value.isdigit() or int(value) not in LONG_MULTIPLES:
    raise ValueError(f"long must be one of {LONG_MULTIPLES} (once), got {arg!r}")
  return rest, int(value)


def get_config(arg: str | None = None):
  """Returns the config for 'VARIANT[,seed=N][,scaling=NAME][,long=N]…' (default 'hope')."""
  arg, long_multiple = _split_long(arg)
  config = _prose_protocol().get_config(arg)
  encoder, params = config.model.encoder, config.model.encoder_params.to_dict()
  config_base.set_model_size(config, "110m")
  config.model.update(dict(encoder=encoder, dtype="bfloat16", logits_dtype="bfloat16"))
  config.model.encoder_params.update(params)
  config.data.update(
    dict(
      source="source_tree",
      path="sysconfig:purelib",
      suffixes=".py",
      validation_percent=5.0,  # validation packages: about 5% of the corpus (base config: 1%)
      seq_len=1024,
    )
  )
  config.train.update(
    dict(
      steps=3500,
      batch_size=64,
      learning_rate=6e-4,
      warmup_steps=350,
      log_every=100,
      checkpoint_every=3500,
      keep_checkpoints=1,
      tensorboard=False,
    )
  )
  config.eval.batch_tokens = 131072
  # Probe formats a 110M code model is off the floor at within L (experiments/code_extrapolation/
  # README.md, "Probe formats"): random ids over the whole vocabulary are mostly ids a code model
  # never learned to emit (copy 0.15-0.21 at gap 0), ids the split uses are copied at 0.46-0.54;
  # single-token random recall pairs stayed at 0 either way, dict-literal code recall is 0.56-0.81.
  config.eval.copy.sources = ("text", "random_seen")
  config.eval.recall.sources = ("code", "words")
  if long_multiple:
    if config.eval.scaling != "none" or config.eval.logn_scaling:
      raise ValueError(f"long={long_multiple} evaluates the trained encoding only, got {arg!r}")
    config.eval.evaluations = ("perplexity",)
    config.eval.perplexity.update(dict(lengths=(float(long_multiple),), max_windows=LONG_WINDOWS))
    config.eval.output_dir = f"eval_long-{long_multiple}"
  return config
