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
[,logn=1][,evals=A+B][,lengths=1+2+…]``.
"""

from hope_jax.config import base as config_base


def _prose_protocol():
  return config_base.sibling_config(__file__, "extrapolation.py")


VARIANTS = _prose_protocol().VARIANTS


def get_config(arg: str | None = None):
  """Returns the config for 'VARIANT[,seed=N][,scaling=NAME]…' (default 'hope')."""
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
  return config
