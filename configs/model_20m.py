"""The 20m preset (hope_jax.config.base.MODEL_SIZES) for accelerators, bfloat16 compute."""

from hope_jax.config import base as config_base


def get_config(encoder: str | None = None):
  """Returns the config; ``--config=configs/model_20m.py:hope`` picks the encoder."""
  return config_base.accelerator_config(
    "20m", encoder, seq_len=512, batch_size=64, learning_rate=1e-3, steps=20000, shard_params=False
  )
