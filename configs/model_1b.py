"""The 1b preset (hope_jax.config.base.MODEL_SIZES) for accelerators, bfloat16 compute."""

from hope_jax.config import base as config_base


def get_config(encoder: str | None = None):
  """Returns the config; ``--config=configs/model_1b.py:hope`` picks the encoder."""
  return config_base.accelerator_config(
    "1b", encoder, seq_len=4096, batch_size=64, learning_rate=3e-4, steps=100000, shard_params=True
  )
