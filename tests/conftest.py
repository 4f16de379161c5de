"""Test configuration: eight virtual CPU devices and float32 matmuls in full precision, so that the
suite passes alike on a CPU-only machine and on a GPU host (``JAX_PLATFORMS=cuda,cpu``)."""

import os

# Must be set before jax is imported anywhere in the test session.  The CPU backend gets eight
# devices on any host (a GPU host too), for the mesh tests (tests/device_helpers.py).
_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
if _DEVICE_COUNT_FLAG not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_DEVICE_COUNT_FLAG}=8".strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # the two workers share a GPU

import jax  # noqa: E402
import pytest  # noqa: E402

# Float32 tests compare against float32 or float64 references to ~1e-5: a GPU's default float32
# matmul (TF32, 10-bit mantissa) is far coarser, the CPU's is already full precision.
jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture
def tiny_config():
  """Returns a factory of tiny float32 TransformerConfigs (2 layers, 64 wide, vocab 128, GQA)."""
  from hope_jax.model import TransformerConfig

  def make(**overrides):
    fields = dict(
      vocab_size=128,
      num_layers=2,
      embed_dim=64,
      num_heads=4,
      num_kv_heads=2,
      mlp_dim=128,
      dtype="float32",
      train_length=32,
      encoder="rope",
    )
    fields.update(overrides)
    return TransformerConfig(**fields)

  return make
