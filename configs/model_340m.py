"""The 340m preset (hope_jax.config.base.MODEL_SIZES) for accelerators, bfloat16 compute."""

from hope_jax.config import base as config_base


def get_config(encoder: str | None = None):
  """Returns the config; ``--config=configs/model_340m.py:hope`` picks the encoder."""
  return config_base.accelerator_config(
    "340m",
    encoder,
    seq_len=2048,
    batch_size=32,
    learning_rate=3e-4,
    steps=100000,
    shard_params=False,
  )
