"""The layer-by-layer long-context forward pass equals the ordinary one; its blockwise attention too."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hope_jax.evaluation import forward, long_forward
from hope_jax.kernels import blockwise_attention
from hope_jax.model import Transformer
from hope_jax.model.attention import causal_mask, reference_attention
from hope_jax.parallel import sharding
from hope_jax.positional import biases

# 101 tokens -> 100 model positions, padded to 128: four slices of 32, eight attention blocks of 16.
SMALL = long_forward.LongForwardOptions(token_chunk=32, attention_block=16, logits_chunk=24)
ENCODERS = {
  "rope": dict(encoder="rope"),
  "hope": dict(encoder="hope"),
  "alibi": dict(encoder="alibi"),
  "kerple": dict(encoder="kerple"),
  "yarn+logn": dict(encoder="rope", scaling="yarn", scaling_factor=4.0, logn_scaling=True),
}


def _mesh():
  return sharding.make_mesh(sharding.MeshConfig(data=1, fsdp=1), jax.devices()[:1])


def _both_passes(config):
  """Returns (model, its LongForward with SMALL slices, random tokens [2, 101])."""
  net = Transformer(config, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(net, nnx.Param, ...)
  long = long_forward.LongForward(
    graphdef, params, rest, mesh=_mesh(), rules=sharding.DEFAULT_RULES, options=SMALL
  )
  tokens = np.random.default_rng(0).integers(0, config.vocab_size, (2, 101)).astype(np.int32)
  return net, long, tokens


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_long_forward_equals_the_ordinary_pass_in_float32(tiny_config, encoder):
  net, long, tokens = _both_passes(tiny_config(**ENCODERS[encoder]))
  assert long.attention == "blockwise"
  with jax.default_matmul_precision("highest"):  # no TF32 on a GPU host
    want = jax.jit(lambda t: forward.next_token_outputs(net, t, chunk_tokens=8192))(tokens)
    got = long.next_token_outputs(tokens)
    hidden, want_hidden = long.hidden_states(tokens), net.hidden_states(tokens)
  assert got["nll"].shape == (2, 100)
  np.testing.assert_allclose(got["nll"], want["nll"], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(got["argmax"], want["argmax"])
  np.testing.assert_allclose(hidden, want_hidden, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
  "encoder",
  [
    e if e in ("rope", "alibi") else pytest.param(e, marks=pytest.mark.slow)
    for e in sorted(ENCODERS)
  ],
)
def test_long_forward_matches_bfloat16_logits_and_nll(tiny_config, encoder):
  net, long, tokens = _both_passes(tiny_config(dtype="bfloat16", **ENCODERS[encoder]))
  x, update, length = long.residual_stream(tokens)
  got = np.asarray(jax.jit(net.logits)(x, update)[:, :length])
  want = np.asarray(jax.jit(net)(tokens))
  assert got.dtype == want.dtype == np.float32
  # Logits of order 0.3; the two passes differ by the rounding of bf16 activations.
  np.testing.assert_allclose(got, want, atol=2e-2)
  nll_long = long.next_token_outputs(tokens)["nll"]
  nll = jax.jit(lambda t: forward.next_token_outputs(net, t, chunk_tokens=8192))(tokens)["nll"]
  assert abs(float(nll_long.mean()) - float(nll.mean())) < 1e-3
  np.testing.assert_allclose(nll_long, nll, atol=1e-2)


@pytest.mark.parametrize("with_bias", [False, True])
def test_blockwise_attention_matches_the_reference(with_bias):
  rng = np.random.default_rng(1)
  batch, length, heads, kv_heads, head_dim = 2, 64, 4, 2, 8
  q = jnp.asarray(rng.normal(size=(batch, length, heads, head_dim)), jnp.float32)
  k, v = (
    jnp.asarray(rng.normal(size=(batch, length, kv_heads, head_dim)), jnp.float32) for _ in range(2)
  )
  positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32) + 7, (batch, length))
  slopes = biases.alibi_slopes(heads)
  bias_fn = (lambda a, b: biases.alibi_bias(a, b, slopes)) if with_bias else None
  with jax.default_matmul_precision("highest"):
    got = blockwise_attention.causal_attention(
      q, k, v, scale=0.3, block=16, positions=positions, bias_fn=bias_fn
    )
    want, _ = reference_attention(
      q,
      k,
      v,
      bias=bias_fn(positions, positions) if with_bias else None,
      mask=causal_mask(length),
      scale=0.3,
    )
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="multiple of block=24"):
    blockwise_attention.causal_attention(q, k, v, scale=0.3, block=24)


def test_plan_pads_to_whole_slices_and_blocks():
  assert long_forward.LongForwardOptions().plan(1_048_575) == (1_048_576, 65_536)
  assert long_forward.LongForwardOptions().plan(65_535) == (65_536, 65_536)
  assert long_forward.LongForwardOptions().plan(100) == (104, 104)
  assert SMALL.plan(100) == (128, 32)
  assert SMALL.plan(65) == (96, 32)


@pytest.mark.parametrize(
  "field, value, message",
  [
    ("token_chunk", 0, "token_chunk must be a positive integer"),
    ("attention_block", 12, "attention_block must be a multiple of 8"),
    ("token_chunk", 3000, "token_chunk must be a multiple of attention_block"),
    ("attention", "flash", "attention must be one of"),
  ],
)
def test_bad_options_name_the_field(field, value, message):
  with pytest.raises(ValueError, match=message):
    long_forward.LongForwardOptions(**{field: value})


def test_a_float32_model_on_a_gpu_is_told_why_its_long_pass_attends_blockwise(tiny_config):
  def hint(backend="gpu", **overrides):
    fields = dict(num_heads=4, num_kv_heads=2, embed_dim=128) | overrides  # head_dim 32
    return long_forward.blockwise_on_gpu_hint(tiny_config(**fields), 65536, backend=backend)

  message = hint()
  assert message and "model.dtype is float32" in message and "model.dtype=bfloat16" in message
  assert hint(dtype="bfloat16") is None
  assert hint(encoder="alibi") is None  # ALiBi, KERPLE: blockwise in any dtype
  assert hint(embed_dim=144) is None  # head_dim 36: cuDNN needs a multiple of 8
  assert hint(attention_impl="xla") is None  # an explicit choice
  assert hint(backend="cpu") is None
