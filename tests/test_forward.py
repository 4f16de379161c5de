"""The evaluation body: the model reads an even length, and the outputs are those of the prefix."""

import jax
import numpy as np
import pytest
from flax import nnx

from hope_jax.evaluation import forward
from hope_jax.model import Transformer


@pytest.mark.parametrize("window, read", [(64, 64), (65, 64)])
def test_next_token_outputs_read_an_even_length_and_equal_the_prefix_pass(
  tiny_config, window, read
):
  net = Transformer(tiny_config(encoder="hope"), rngs=nnx.Rngs(0))
  tokens = np.random.default_rng(0).integers(0, 128, (2, window)).astype(np.int32)
  lengths = []
  hidden_states = net.hidden_states

  def spy(t, *args, **kwargs):
    lengths.append(t.shape[1])
    return hidden_states(t, *args, **kwargs)

  net.hidden_states = spy  # type: ignore[method-assign]
  with jax.default_matmul_precision("highest"):
    got = forward.next_token_outputs(net, tokens, chunk_tokens=48)
    prefix = hidden_states(tokens[:, :-1])
    logits = np.asarray(net.logits(prefix))
  # Even, as cuDNN's attention needs: 64 of a 64-token window (not 63), 64 of a 65-token one.
  assert lengths == [read]
  assert got["nll"].shape == got["argmax"].shape == (2, window - 1)
  labels = tokens[:, 1:]
  log_probs = logits - jax.nn.logsumexp(logits, axis=-1, keepdims=True)
  want = -np.take_along_axis(np.asarray(log_probs), labels[..., None], axis=-1)[..., 0]
  np.testing.assert_allclose(got["nll"], want, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(got["argmax"], logits.argmax(-1))
