"""A tiny model on the embedded corpus: trains on a laptop CPU in a minute or two."""

from hope_jax.config import base as config_base


def get_config(encoder: str | None = None):
  """Returns the config; ``--config=configs/tiny_cpu.py:hope`` picks the encoder."""
  config = config_base.base_config()
  config_base.set_model_size(config, "tiny")
  config_base.set_encoder(config, encoder or "rope")
  config.data.seq_len = 128
  config.train.update(
    dict(
      steps=200,
      batch_size=16,
      learning_rate=3e-3,
      warmup_steps=20,
      log_every=20,
      checkpoint_every=100,
    )
  )
  return config
