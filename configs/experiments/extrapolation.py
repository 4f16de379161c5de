"""The extrapolation protocol (issue: reproduce the extrapolation tables): one ~34M-parameter
architecture trained at L = 512 on the shared prose corpus, identical data order, steps, optimiser
and seeds for every encoder; evaluated from 512 to 32,768 tokens.

    python -m hope_jax train    --config=configs/experiments/extrapolation.py:hope,seed=1 --workdir=W
    python -m hope_jax evaluate --config=configs/experiments/extrapolation.py:hope,seed=1 --workdir=W

The argument is ``VARIANT[,seed=N][,scaling=NAME][,logn=1][,evals=A+B]``; VARIANT is a key of
VARIANTS; ``evals`` restricts the evaluations (e.g. ``evals=perplexity``).
``scaling`` (yarn, ntk, linear, llama3) and ``logn=1`` (log-length query scaling) are evaluation-time
variants of a trained run: they evaluate perplexity and passkey only, into DIR/eval_<scaling>….
"""

from hope_jax.config import base as config_base

# Trained variants: encoder name and parameters.  "hope_p2" is a beyond-the-paper cutoff (bands
# with at least two full periods within L).
VARIANTS = {
  "rope": ("rope", {}),
  "hope": ("hope", {}),
  "nope": ("nope", {}),
  "p_rope": ("p_rope", {"p": 0.75}),
  "alibi": ("alibi", {}),
  "hope_p2": ("hope", {"min_periods": 2.0}),
}


def get_config(arg: str | None = None):
  """Returns the config for 'VARIANT[,seed=N][,scaling=NAME]' (default 'hope')."""
  parts = (arg or "hope").split(",")
  variant, options = parts[0], dict(p.split("=", 1) for p in parts[1:])
  if variant not in VARIANTS:
    raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
  encoder, params = VARIANTS[variant]
  config = config_base.base_config()
  config.seed = int(options.pop("seed", 0))
  config.model.update(
    dict(
      num_layers=8,
      embed_dim=512,
      num_heads=8,
      num_kv_heads=8,
      mlp_dim=1408,
      tie_embeddings=True,
      dtype="bfloat16",
    )
  )
  config_base.set_encoder(config, encoder, **params)
  config.data.update(dict(source="local", path="../shared/corpus/prose", seq_len=512))
  # 19.6M training tokens with the shipped tokenizer; 1,800 steps × 64 × 512 = 59M tokens = 3 epochs.
  config.train.update(
    dict(
      steps=1800,
      batch_size=64,
      learning_rate=1e-3,
      warmup_steps=180,
      min_lr_ratio=0.1,
      weight_decay=0.1,
      log_every=100,
      checkpoint_every=600,
      keep_checkpoints=1,
    )
  )
  config.eval.update(
    dict(
      batch_tokens=65536,
      scaling=options.pop("scaling", "none"),
      logn_scaling=bool(int(options.pop("logn", 0))),
    )
  )
  config.eval.perplexity.update(dict(lengths=(1, 2, 4, 8, 16, 32, 64), max_windows=64))
  config.eval.passkey.update(dict(lengths=(1, 2, 4, 8, 16, 32), keys=5))
  config.eval.copy.update(dict(gaps=(0.0, 1.0, 4.0, 16.0), segment_length=64))
  config.eval.recall.distances = (0.5, 1.0, 4.0, 16.0)
  config.eval.attention.update(dict(length=8, windows=4))
  if config.eval.scaling != "none" or config.eval.logn_scaling:
    config.eval.evaluations = ("perplexity", "passkey")
  if "batch_tokens" in options:  # tokens per evaluation forward pass (memory of bias encoders)
    config.eval.batch_tokens = int(options.pop("batch_tokens"))
  if "lengths" in options:  # e.g. lengths=1+2+4+8+16 (multiples of L)
    config.eval.perplexity.lengths = tuple(float(x) for x in options.pop("lengths").split("+"))
  if "evals" in options:  # e.g. evals=perplexity or evals=perplexity+passkey
    config.eval.evaluations = tuple(options.pop("evals").split("+"))
  if options:
    raise ValueError(f"unknown option(s) {sorted(options)} in {arg!r}")
  return config
