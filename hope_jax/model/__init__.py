"""A Llama-style Flax NNX decoder whose positional encoder is chosen by its config."""

from hope_jax.model.analysis import analysis_forward
from hope_jax.model.config import TransformerConfig, flops_per_token, num_params
from hope_jax.model.generation import generate
from hope_jax.model.kv_cache import KVCache
from hope_jax.model.transformer import Transformer, create_sharded_model
