"""HoPE and rotary-family positional encoders for JAX/Flax, with a sharded NNX transformer,
data, training and long-context evaluation.

The package is layered; each layer imports only from the layers before it:

1. ``hope_jax.positional`` — the encoders, context extension, logit biases, the encoder registry
   (re-exported here: ``from hope_jax import apply_hope, hope_frequencies``);
2. ``hope_jax.parallel`` — meshes, logical-axis sharding rules, multi-process start-up;
3. ``hope_jax.kernels`` — every Pallas/Mosaic kernel behind one entry point per operation;
4. ``hope_jax.model`` — the Flax NNX transformer; ``hope_jax.data`` — text sources, tokenizer,
   token caches and batches;
5. ``hope_jax.training`` — state, step, loop, checkpoints, metrics;
6. ``hope_jax.evaluation`` — the evaluation suite, tables and plots;
7. ``hope_jax.config`` — the ml_collections configs and their resolution;
8. ``hope_jax.interop`` — Hugging Face checkpoints in and out;
9. ``hope_jax.cli`` — ``python -m hope_jax``.
"""

from hope_jax._version import __version__
from hope_jax.positional import (
  PositionalEncoding,
  alibi_bias,
  alibi_slopes,
  apply_hope,
  apply_rope,
  apply_rotary,
  build_encoding,
  dynamic_ntk_factor,
  encoder_names,
  encoder_parameters,
  hope_frequencies,
  hope_kept_bands,
  kerple_log_bias,
  linear_scaling,
  llama3_scaling,
  nope_frequencies,
  ntk_aware_scaling,
  p_rope_frequencies,
  partial_rotary_frequencies,
  register_encoder,
  rope_frequencies,
  rotation_angles,
  rotation_cos_sin,
  scale_frequencies,
  yarn_attention_factor,
  yarn_scaling,
)
