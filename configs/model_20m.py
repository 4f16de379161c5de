"""The 20m preset (see hope_jax.config_base.MODEL_SIZES), bfloat16 compute, for accelerators."""

from hope_jax import config_base


def get_config(encoder: str | None = None):
  """Returns the config; ``--config=configs/model_20m.py:hope`` picks the encoder."""
  config = config_base.base_config()
  config_base.set_model_size(config, "20m")
  config_base.set_encoder(config, encoder or "rope")
  config.model.dtype = "bfloat16"
  config.data.seq_len = 512
  config.train.update(dict(steps=20000, batch_size=64, learning_rate=1e-3,
                           warmup_steps=min(2000, 20000 // 10), log_every=100,
                           checkpoint_every=1000, keep_checkpoints=3))
  return config
