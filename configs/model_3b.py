"""The 3b preset (hope_jax.config.base.MODEL_SIZES) for accelerators, bfloat16 compute."""

from hope_jax.config import base as config_base


def get_config(encoder: str | None = None):
  """Returns the config; ``--config=configs/model_3b.py:hope`` picks the encoder."""
  return config_base.accelerator_config(
    "3b", encoder, seq_len=4096, batch_size=128, learning_rate=2e-4, steps=100000, shard_params=True
  )
