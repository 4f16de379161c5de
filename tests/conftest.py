"""Test configuration: eight virtual CPU devices, so that sharding tests run on any machine."""

import os

# Must be set before jax is imported anywhere in the test session.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")


import pytest  # noqa: E402


@pytest.fixture
def tiny_config():
  """Returns a factory of tiny float32 TransformerConfigs (2 layers, 64 wide, vocab 128, GQA)."""
  from hope_jax.model import TransformerConfig

  def make(**overrides):
    fields = dict(vocab_size=128, num_layers=2, embed_dim=64, num_heads=4, num_kv_heads=2,
                  mlp_dim=128, dtype="float32", train_length=32, encoder="rope")
    fields.update(overrides)
    return TransformerConfig(**fields)

  return make
