"""The positional core: HoPE, RoPE and their baselines as pure functions, context extension, logit
biases and the registry that builds an encoder from a config's name and parameters.

This is what a user imports into their own Flax model; it depends on nothing else in hope_jax.
"""

from hope_jax.positional.biases import alibi_bias, alibi_slopes, kerple_log_bias
from hope_jax.positional.encoders import (
  apply_hope,
  apply_rope,
  apply_rotary,
  hope_frequencies,
  hope_kept_bands,
  nope_frequencies,
  p_rope_frequencies,
  partial_rotary_frequencies,
  rope_frequencies,
  rotation_angles,
  rotation_cos_sin,
)
from hope_jax.positional.registry import (
  PositionalEncoding,
  build_encoding,
  encoder_names,
  encoder_parameters,
  register_encoder,
)
from hope_jax.positional.scaling import (
  dynamic_ntk_factor,
  linear_scaling,
  llama3_scaling,
  ntk_aware_scaling,
  scale_frequencies,
  yarn_attention_factor,
  yarn_scaling,
)

__all__ = [
  "PositionalEncoding",
  "alibi_bias",
  "alibi_slopes",
  "apply_hope",
  "apply_rope",
  "apply_rotary",
  "build_encoding",
  "dynamic_ntk_factor",
  "encoder_names",
  "encoder_parameters",
  "hope_frequencies",
  "hope_kept_bands",
  "kerple_log_bias",
  "linear_scaling",
  "llama3_scaling",
  "nope_frequencies",
  "ntk_aware_scaling",
  "p_rope_frequencies",
  "partial_rotary_frequencies",
  "register_encoder",
  "rope_frequencies",
  "rotation_angles",
  "rotation_cos_sin",
  "scale_frequencies",
  "yarn_attention_factor",
  "yarn_scaling",
]
