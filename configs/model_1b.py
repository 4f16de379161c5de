"""The 1b preset (see hope_jax.config_base.MODEL_SIZES), bfloat16 compute, for accelerators."""

from hope_jax import config_base


def get_config(encoder: str | None = None):
  """Returns the config; ``--config=configs/model_1b.py:hope`` picks the encoder."""
  config = config_base.base_config()
  config_base.set_model_size(config, "1b")
  config_base.set_encoder(config, encoder or "rope")
  config.model.dtype = "bfloat16"
  config.model.remat = "full"
  config.mesh.fsdp = -1  # parameters and optimizer state sharded over all devices
  config.mesh.data = 1
  config.data.seq_len = 4096
  config.train.update(dict(steps=100000, batch_size=64, learning_rate=3e-4,
                           warmup_steps=min(2000, 100000 // 10), log_every=100,
                           checkpoint_every=1000, keep_checkpoints=3))
  return config
