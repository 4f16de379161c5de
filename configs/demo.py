"""The demo's pretrained models: RoPE or HoPE at L = 128 on the embedded corpus.

    python -m hope_jax train --config=configs/demo.py:hope --workdir=DIR

``hope_jax/assets/demo/README.md`` records the commands, the machine and the losses of the shipped
releases; ``python -m hope_jax demo`` evaluates them on the CPU at 1…32 × L.
"""

from hope_jax.config import base as config_base


def get_config(encoder: str | None = None):
  """Returns the config; ``--config=configs/demo.py:hope`` picks the encoder (default rope)."""
  config = config_base.base_config()
  config_base.set_model_size(config, "tiny")
  config.model.num_layers = 4  # 2.95M parameters, 2.1M of them the embedding table
  config_base.set_encoder(config, encoder or "rope")
  config.data.seq_len = 128
  config.train.update(
    dict(
      steps=8000,
      batch_size=32,  # 4,096 tokens a step: 32.8M tokens, 21 epochs of the corpus
      learning_rate=3e-3,
      warmup_steps=200,
      log_every=100,
      checkpoint_every=1000,
      keep_checkpoints=2,
      tensorboard=False,
    )
  )
  config.eval.update(dict(batch_tokens=16384, evaluations=("perplexity",)))
  config.eval.perplexity.update(dict(lengths=(1, 2, 4, 8, 16, 32), max_windows=32))
  return config
