"""The extrapolation protocol at Cloud TPU scale: PG-19 from TFDS, a 340M model at L = 2048.

Same code path as configs/experiments/extrapolation.py (same variants and evaluations), with the
data from the TFDS catalog (``pg19``, text field ``book_text``, prepared as array_record in
``data_dir``, which may be a gs:// bucket) and a mesh for a TPU VM slice.  Untested here: this
workplace has no TPU and no network to download PG-19.

    python -m hope_jax train --config=configs/experiments/extrapolation_tpu.py:hope,seed=0 \
        --workdir=gs://BUCKET/hope/hope-s0 --config.data.data_dir=gs://BUCKET/tfds
"""

from hope_jax.config import base as config_base


def _base_protocol():
  return config_base.sibling_config(__file__, "extrapolation.py")


def get_config(arg: str | None = None):
  """Returns the TPU-scale config for 'VARIANT[,seed=N][,scaling=NAME]'."""
  config = _base_protocol().get_config(arg)
  config_base.set_model_size(config, "340m")
  config.model.update(dict(dtype="bfloat16", remat="dots_no_batch", attention_impl="auto"))
  config.data.update(dict(source="tfds", name="pg19", path="", seq_len=2048))
  config.train.update(
    dict(
      steps=50000,
      batch_size=256,
      learning_rate=3e-4,
      warmup_steps=2000,
      log_every=100,
      checkpoint_every=1000,
      keep_checkpoints=3,
    )
  )
  config.mesh.update(dict(data=-1, fsdp=4, tensor=1))  # e.g. a v5p-32 slice: 16 chips = 4 × 4
  config.eval.perplexity.update(dict(lengths=(1, 2, 4, 8, 16, 32), max_windows=256))
  return config
