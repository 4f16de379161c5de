"""The 110m preset (hope_jax.config.base.MODEL_SIZES) for accelerators, bfloat16 compute."""

from hope_jax.config import base as config_base


def get_config(encoder: str | None = None):
  """Returns the config; ``--config=configs/model_110m.py:hope`` picks the encoder."""
  return config_base.accelerator_config(
    "110m",
    encoder,
    seq_len=1024,
    batch_size=64,
    learning_rate=6e-4,
    steps=50000,
    shard_params=False,
  )
