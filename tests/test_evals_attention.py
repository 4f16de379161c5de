"""Tests of the attention analysis: band decomposition, distance statistics, shift invariance."""

import functools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hope_jax.config import base as config_base
from hope_jax.config.resolve import resolve
from hope_jax.evaluation import attention as evals_attention
from hope_jax.evaluation import context as eval_context
from hope_jax.evaluation import runner as evaluate
from hope_jax.model import Transformer, analysis_forward

LENGTH = 24


def _forward(model, tokens, positions):
  graphdef, state = nnx.split(model)
  fn = jax.jit(lambda s, t, p: analysis_forward(nnx.merge(graphdef, s), t, p))
  return fn(state, tokens, positions)[1]


def _bands(encoding):
  """band_contributions with the encoding's (concrete) frequencies and layout, jitted."""
  return jax.jit(
    functools.partial(
      evals_attention.band_contributions, frequencies=encoding.frequencies, layout=encoding.layout
    )
  )


def _tokens(rows=2, length=LENGTH, seed=0):
  return jax.random.randint(jax.random.key(seed), (rows, length), 0, 128)


@pytest.mark.parametrize(
  "overrides",
  [
    dict(encoder="rope"),
    dict(encoder="hope"),
    dict(encoder="p_rope", encoder_params={"p": 0.5, "layout": "interleaved"}),
    dict(encoder="rope", scaling="yarn", scaling_factor=4.0),
  ],
  ids=["rope", "hope", "p_rope_interleaved", "rope_yarn"],
)
def test_band_contributions_sum_to_the_attention_logits(tiny_config, overrides):
  cfg = tiny_config(num_layers=1, **overrides)
  model = Transformer(cfg, rngs=nnx.Rngs(1))
  tokens = _tokens()
  positions = 5 + jnp.broadcast_to(jnp.arange(LENGTH), tokens.shape)
  extras = _forward(model, tokens, positions)
  encoding = cfg.encoding
  scale = encoding.logit_scale / math.sqrt(cfg.head_dim)
  rotate = jax.jit(encoding.rotate)
  for layer in range(cfg.num_layers):
    q, k = extras["q"][layer], extras["k"][layer]
    bands = _bands(encoding)(q, k, positions)
    assert bands.shape == (2, cfg.num_heads, cfg.head_dim // 2, LENGTH, LENGTH)
    logits = bands.sum(axis=2)
    rotated = jnp.einsum("bthd,bshd->bhts", rotate(q, positions), rotate(k, positions))
    np.testing.assert_allclose(logits, rotated, rtol=1e-4, atol=1e-5)
    # The model's own attention probabilities follow from the band sum.
    masked = jnp.where(jnp.tril(jnp.ones((LENGTH, LENGTH), bool)), logits * scale, -jnp.inf)
    np.testing.assert_allclose(
      jax.nn.softmax(masked, axis=-1), extras["attention"][layer], rtol=1e-4, atol=1e-6
    )


def test_unrotated_bands_contribute_the_plain_dot_product(tiny_config):
  cfg = tiny_config(encoder="hope", num_layers=1)
  frequencies = cfg.encoding.frequencies
  assert (frequencies == 0).any() and (frequencies > 0).any()
  extras = _forward(Transformer(cfg, rngs=nnx.Rngs(2)), _tokens(), None)
  q, k = extras["q"][0], extras["k"][0]
  positions = jnp.broadcast_to(jnp.arange(LENGTH), (2, LENGTH))
  bands = _bands(cfg.encoding)(q, k, positions)
  half = cfg.head_dim // 2
  for i in np.flatnonzero(frequencies == 0):
    plain = jnp.einsum("bth,bsh->bhts", q[..., i], k[..., i]) + jnp.einsum(
      "bth,bsh->bhts", q[..., i + half], k[..., i + half]
    )
    np.testing.assert_allclose(bands[:, :, i], plain, rtol=1e-5, atol=1e-6)


def test_shear_and_buckets():
  m = jnp.arange(16.0).reshape(4, 4)
  sheared = evals_attention.shear(m)
  np.testing.assert_array_equal(sheared[:, 0], jnp.diagonal(m))  # distance 0
  np.testing.assert_array_equal(sheared[3], [15, 14, 13, 12])  # query 3 at distances 0..3
  assert float(sheared[0, 1:].sum()) == 0.0  # query 0 has no distance > 0
  edges = evals_attention.distance_buckets(100, 8)
  assert edges[0] == 0 and edges[1] == 1 and edges[-1] == 100
  assert np.all(np.diff(edges) > 0)
  counts = 100 - np.arange(100.0)
  ones = evals_attention.bucket_average(counts, counts, edges)
  np.testing.assert_allclose(ones, 1.0)


def test_statistics_match_the_full_decomposition(tiny_config):
  cfg = tiny_config(encoder="rope")
  model = Transformer(cfg, rngs=nnx.Rngs(3))
  tokens = _tokens(rows=2)
  graphdef, state = nnx.split(model)
  stats = jax.jit(lambda s, t: evals_attention.attention_statistics(nnx.merge(graphdef, s), t))(
    state, tokens
  )
  extras = _forward(model, tokens, None)
  positions = jnp.broadcast_to(jnp.arange(LENGTH), tokens.shape)
  # Every query's probabilities sum to 1, so the sums over distances are heads × queries.
  np.testing.assert_allclose(stats["attention"].sum(-1), cfg.num_heads * LENGTH, rtol=1e-5)
  for layer in range(cfg.num_layers):
    bands = _bands(cfg.encoding)(extras["q"][layer], extras["k"][layer], positions)
    by_distance = evals_attention.shear(bands).sum(axis=(1, 3))  # [B, bands, distance]
    np.testing.assert_allclose(stats["band"][:, layer], by_distance, rtol=1e-4, atol=1e-4)
    abs_by_distance = evals_attention.shear(jnp.abs(bands)).sum(axis=(1, 3))
    np.testing.assert_allclose(stats["band_abs"][:, layer], abs_by_distance, rtol=1e-4, atol=1e-4)
    q = extras["q"][layer]
    energy = (q[..., : cfg.head_dim // 2] ** 2 + q[..., cfg.head_dim // 2 :] ** 2).mean((1, 2))
    np.testing.assert_allclose(stats["q_energy"][:, layer], energy, rtol=1e-5)


@pytest.mark.parametrize("encoder, tolerance", [("nope", 1e-6), ("rope", 2e-4)])
def test_analysis_is_unchanged_by_a_position_offset(tiny_config, encoder, tolerance):
  model = Transformer(tiny_config(encoder=encoder, num_layers=1), rngs=nnx.Rngs(4))
  tokens = np.asarray(_tokens(rows=2, length=32))
  base = evals_attention.analyze(model, tokens, num_buckets=6)
  shifted = evals_attention.analyze(model, tokens, position_offset=1000, num_buckets=6)
  for a, b in zip(base["layers"], shifted["layers"]):
    for key in ("attention", "band_contribution", "band_abs_contribution", "q_norm", "k_norm"):
      np.testing.assert_allclose(a[key], b[key], rtol=tolerance, atol=tolerance)
  assert base["buckets"][0] == {"start": 0, "end": 1} and base["buckets"][-1]["end"] == 32


def test_band_classes_follow_the_training_length():
  frequencies = np.array([2 * math.pi / 8, 2 * math.pi / 64, 0.0])
  assert evals_attention.band_classes(frequencies, 32) == ["high", "low", "unrotated"]


def test_attention_evaluation_writes_json_and_figures(tmp_path):
  config = config_base.base_config()
  config.model.update(dict(num_layers=2, embed_dim=64, num_heads=2, num_kv_heads=1, mlp_dim=128))
  config_base.set_encoder(config, "hope")
  config.data.seq_len = 32
  config.eval.attention.update(dict(length=2, windows=3, buckets=6))
  run = resolve(config)
  ctx = eval_context.fresh_context(
    run.eval, run.model, run.mesh, run.data, str(tmp_path), devices=jax.devices()[:1]
  )
  result = evaluate.EVALUATIONS["attention"](ctx)
  json.dumps(result)  # JSON-able
  assert result["length"] == 64 and result["windows"] == 3 and result["tokens"] == 192
  assert len(result["layers"]) == 2 and len(result["band_classes"]) == 16
  layer = result["layers"][0]
  assert len(layer["attention"]) == len(result["buckets"])
  assert np.asarray(layer["band_contribution"]).shape == (16, len(result["buckets"]))
  assert math.isclose(sum(layer["class_share"].values()), 1.0, rel_tol=1e-6)
  # HoPE at L = 32: unrotated bands exist, and no rotating band is slower than one period in L.
  assert "low" not in result["band_classes"] and "unrotated" in result["band_classes"]
  assert (tmp_path / "attention_distance.png").stat().st_size > 1000
  assert (tmp_path / "band_contributions.png").stat().st_size > 1000


def test_statistics_memory_does_not_grow_with_depth(tiny_config):
  """Each layer is reduced as it runs: 6 layers need about the scratch memory of 1, not 6×."""

  def scratch_bytes(num_layers: int) -> int:
    graphdef, state = nnx.split(Transformer(tiny_config(num_layers=num_layers), rngs=nnx.Rngs(0)))
    fn = jax.jit(lambda s, t: evals_attention.attention_statistics(nnx.merge(graphdef, s), t))
    compiled = fn.lower(state, jnp.zeros((1, 512), jnp.int32)).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  assert scratch_bytes(6) < 1.3 * scratch_bytes(1)
