"""The code-extrapolation protocol at Cloud TPU scale, on TFDS catalog data.

Same model (110m, L = 1,024), variants and evaluations as configs/experiments/code_extrapolation.py,
with long documents from the TFDS catalog (``pg19``: books, text field ``book_text``, prepared as
array_record in ``data_dir``, which may be a gs:// bucket), 10× the tokens and a mesh for a TPU VM
slice.  Untested here: this workplace has no TPU and no network to download PG-19.

    python -m hope_jax train --config=configs/experiments/code_extrapolation_tpu.py:hope,seed=0 \\
        --workdir=gs://BUCKET/hope-code/hope-s0 --config.data.data_dir=gs://BUCKET/tfds
"""

from hope_jax.config import base as config_base


def _code_protocol():
  return config_base.sibling_config(__file__, "code_extrapolation.py")


def get_config(arg: str | None = None):
  """Returns the TPU-scale config for 'VARIANT[,seed=N][,scaling=NAME]…'."""
  config = _code_protocol().get_config(arg)
  config.model.update(dict(logits_dtype="float32", attention_impl="auto"))
  config.data.update(dict(source="tfds", name="pg19", path="", suffixes=".py"))
  config.train.update(
    dict(
      steps=35000,  # 2.3B tokens: 10x the GPU protocol
      batch_size=64,
      checkpoint_every=1000,
      keep_checkpoints=3,
      warmup_steps=1000,
      tensorboard=True,
    )
  )
  config.mesh.update(dict(data=-1, fsdp=1, tensor=1))  # data parallel over the slice's chips
  return config
