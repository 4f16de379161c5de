"""Tests of the NNX transformer: config, encoders in the model, KV-cache decoding, GQA, remat."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hope_jax import kernels
from hope_jax.kernels import norm as fused_norm
from hope_jax.kernels import selector
from hope_jax.model import (
  Transformer,
  TransformerConfig,
  analysis_forward,
  attention,
  flops_per_token,
  generate,
  num_params,
)
from hope_jax.model.layers import float32_logits
from hope_jax.positional import encoders

ENCODERS = ["rope", "hope", "nope", "p_rope", "partial_rope", "alibi", "kerple"]


def _tokens(batch: int, length: int, seed: int = 0) -> jax.Array:
  return jax.random.randint(jax.random.key(seed), (batch, length), 0, 128, jnp.int32)


def _jit_forward(model: Transformer, *, analysis: bool = False):
  """Returns a jitted fn(tokens, positions=None, segment_ids=None) -> the model's logits, or
  (logits, extras) of the analysis forward."""
  graphdef, state = nnx.split(model)
  forward = analysis_forward if analysis else lambda net, *args: net(*args)
  fn = jax.jit(lambda s, *args: forward(nnx.merge(graphdef, s), *args))
  return lambda *args: fn(state, *args)


@pytest.mark.parametrize(
  "encoder,norm_impl",
  [(e, "auto") for e in ENCODERS]
  + [
    pytest.param(
      "hope",
      "pallas",
      marks=pytest.mark.skipif(fused_norm.plgpu is None, reason="no Pallas Triton backend"),
    )
  ],
)
def test_kv_cache_decoding_matches_forward(tiny_config, encoder, norm_impl):
  """Prefill + decode equals the full forward; with Pallas norms too (rows of one token)."""
  config = tiny_config(encoder=encoder, norm_impl=norm_impl)
  graphdef, state = nnx.split(Transformer(config, rngs=nnx.Rngs(0)))

  @jax.jit
  def run(state, tokens):
    model = nnx.merge(graphdef, state)
    cache = model.init_cache(2, 16)
    first, cache = model.prefill(tokens[:, :5], cache)

    def step(cache, token):
      logits, cache = model.decode_step(token, cache)
      return cache, logits

    cache, rest = jax.lax.scan(step, cache, tokens[:, 5:].T)
    decoded = jnp.concatenate([first, rest.transpose(1, 0, 2)], axis=1)
    return model(tokens), decoded, cache.length

  full, decoded, length = run(state, _tokens(2, 12))
  np.testing.assert_allclose(decoded, full, rtol=1e-5, atol=1e-5)
  assert int(length) == 12


def test_kv_cache_rejects_overflow(tiny_config):
  model = Transformer(tiny_config(), rngs=nnx.Rngs(0))
  cache = model.init_cache(1, 4)
  with pytest.raises(ValueError, match="max_length=4"):
    model.prefill(_tokens(1, 5), cache)


def test_generate_is_greedy_argmax(tiny_config):
  model = Transformer(tiny_config(encoder="hope"), rngs=nnx.Rngs(1))
  prompt = _tokens(2, 4)
  out = generate(model, prompt, 5)
  assert out.shape == (2, 9)
  np.testing.assert_array_equal(out[:, :4], prompt)
  # The model is causal: logits at t − 1 of the whole output are those of the prefix out[:, :t].
  greedy = jnp.argmax(_jit_forward(model)(out)[:, 3:-1], axis=-1)
  np.testing.assert_array_equal(out[:, 4:], greedy)


def test_hope_bands_come_from_config_train_length(tiny_config):
  cfg = tiny_config(encoder="hope", train_length=32)
  kept = encoders.hope_kept_bands(cfg.head_dim, train_length=32)
  assert cfg.encoding.num_rotated_bands == kept < cfg.head_dim // 2
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  forward = _jit_forward(model)
  tokens = _tokens(1, 64)  # longer than train_length: the cutoff must not move
  # Float32 at two sequence lengths: a GPU sums the products in another order (~1e-6 apart).
  np.testing.assert_allclose(forward(tokens)[:, :8], forward(tokens[:, :8]), rtol=1e-5, atol=1e-5)
  other = dataclasses.replace(cfg, train_length=4096)
  assert other.encoding.num_rotated_bands > kept
  # Same parameters, longer training length: more bands rotate, so the output changes.
  relabelled = nnx.merge(
    nnx.graphdef(nnx.eval_shape(lambda: Transformer(other, rngs=nnx.Rngs(0)))), nnx.state(model)
  )
  assert not np.allclose(_jit_forward(relabelled)(tokens[:, :8]), forward(tokens[:, :8]), atol=1e-4)


def test_nope_is_identical_at_shifted_positions(tiny_config):
  forward = _jit_forward(Transformer(tiny_config(encoder="nope"), rngs=nnx.Rngs(0)))
  tokens = _tokens(2, 10)
  positions = jnp.broadcast_to(jnp.arange(10, dtype=jnp.int32), (2, 10))
  np.testing.assert_array_equal(forward(tokens, positions), forward(tokens, positions + 1000))


def test_rope_is_shift_invariant_but_position_aware(tiny_config):
  forward = _jit_forward(Transformer(tiny_config(encoder="rope"), rngs=nnx.Rngs(0)))
  tokens = _tokens(1, 10)
  pos = jnp.arange(10, dtype=jnp.int32)[None]
  np.testing.assert_allclose(forward(tokens, pos), forward(tokens, pos + 37), rtol=1e-4, atol=1e-4)
  assert not np.allclose(forward(tokens, pos), forward(tokens, pos * 3), atol=1e-4)


def test_gqa_equals_mha_with_repeated_kv_weights(tiny_config):
  gqa = Transformer(tiny_config(num_heads=4, num_kv_heads=2), rngs=nnx.Rngs(0))
  assert gqa.blocks[0].attn.k_proj.shape == (64, 2, 16)
  mha = Transformer(tiny_config(num_heads=4, num_kv_heads=4), rngs=nnx.Rngs(0))
  for g, m in zip(gqa.blocks, mha.blocks):
    m.attn.q_proj[...] = g.attn.q_proj[...]
    m.attn.o_proj[...] = g.attn.o_proj[...]
    m.attn.k_proj[...] = jnp.repeat(g.attn.k_proj[...], 2, axis=1)
    m.attn.v_proj[...] = jnp.repeat(g.attn.v_proj[...], 2, axis=1)
    for name in ("gate", "up", "down"):
      getattr(m.mlp, name)[...] = getattr(g.mlp, name)[...]
  mha.embedding[...] = gqa.embedding[...]
  mha.lm_head[...] = gqa.lm_head[...]
  tokens = _tokens(2, 9)
  np.testing.assert_allclose(
    _jit_forward(gqa)(tokens), _jit_forward(mha)(tokens), rtol=1e-5, atol=1e-5
  )


def test_tied_embeddings_share_the_table(tiny_config):
  tied = Transformer(tiny_config(tie_embeddings=True), rngs=nnx.Rngs(0))
  params = nnx.state(tied, nnx.Param)
  assert "lm_head" not in params
  count = sum(x.size for x in jax.tree.leaves(params))
  assert count == num_params(tied.config) == num_params(tiny_config()) - 128 * 64
  h = jax.random.normal(jax.random.key(3), (1, 3, 64))
  expected = tied.final_norm(h) @ tied.embedding[...].T
  np.testing.assert_allclose(tied.logits(h), expected, rtol=1e-5, atol=1e-5)


def test_num_params_and_flops(tiny_config):
  cfg = tiny_config(encoder="kerple")
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  assert sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))) == num_params(cfg)
  non_embedding = num_params(cfg, non_embedding=True)
  assert non_embedding == num_params(cfg) - 128 * 64
  assert flops_per_token(cfg, 32) == 6 * non_embedding + 6 * 2 * 32 * 64


def test_remat_gives_the_same_gradients(tiny_config):
  tokens = _tokens(2, 12)

  def grads(cfg):
    graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))

    def loss(p):
      return jnp.mean(nnx.merge(graphdef, p)(tokens) ** 2)

    return jax.jit(jax.grad(loss))(params), str(jax.make_jaxpr(loss)(params))

  (base, plain), (rematted, checkpointed) = (
    grads(tiny_config(encoder="kerple")),
    grads(tiny_config(encoder="kerple", remat=True)),
  )
  is_remat = lambda jaxpr: "remat" in jaxpr or "checkpoint" in jaxpr  # noqa: E731
  assert is_remat(checkpointed) and not is_remat(plain)
  for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(rematted)):  # fused differently on a GPU
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert any(float(jnp.abs(a).max()) > 0 for a in jax.tree.leaves(base))


@pytest.mark.parametrize(
  "overrides", [dict(encoder="hope"), dict(encoder="kerple", logn_scaling=True)]
)
def test_analysis_forward_outputs(tiny_config, overrides):
  """The analysis forward's logits are the model's; its probabilities are causal and sum to 1;
  with a rotary encoder they are rebuilt from its pre-rotation q and k."""
  cfg = tiny_config(**overrides)
  model = Transformer(cfg, rngs=nnx.Rngs(0))
  tokens = _tokens(2, 10)
  logits, extras = _jit_forward(model, analysis=True)(tokens)
  np.testing.assert_allclose(logits, _jit_forward(model)(tokens), rtol=1e-5, atol=1e-5)
  probs, q, k = extras["attention"], extras["q"], extras["k"]
  assert probs.shape == (2, 2, 4, 10, 10) and q.shape == k.shape == (2, 2, 10, 4, 16)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  assert float(jnp.abs(jnp.triu(probs, k=1)).max()) == 0.0
  if cfg.encoding.bias is None:  # rebuilt from the pre-rotation q, k and the encoder
    pos = jnp.arange(10)[None]
    qr, kr = cfg.encoding.rotate(q[0], pos), cfg.encoding.rotate(k[0], pos)
    scores = jnp.einsum("bthd,bshd->bhts", qr, kr) / np.sqrt(cfg.head_dim)
    scores = jnp.where(jnp.tril(jnp.ones((10, 10), bool)), scores, -jnp.inf)
    np.testing.assert_allclose(jax.nn.softmax(scores, -1), probs[0], rtol=1e-4, atol=1e-6)


def test_segments_block_attention_across_documents(tiny_config):
  model = Transformer(tiny_config(), rngs=nnx.Rngs(0))
  forward = _jit_forward(model)
  tokens = _tokens(1, 12)
  segments = jnp.asarray([[0] * 5 + [1] * 7], jnp.int32)
  positions = jnp.arange(12, dtype=jnp.int32)[None]
  changed = tokens.at[:, :5].set((tokens[:, :5] + 1) % 128)
  a, b = forward(tokens, positions, segments), forward(changed, positions, segments)
  np.testing.assert_allclose(a[:, 5:], b[:, 5:], rtol=1e-5, atol=1e-6)
  one_segment = jnp.zeros_like(segments)
  assert not np.allclose(
    forward(tokens, positions, one_segment)[:, 5:],
    forward(changed, positions, one_segment)[:, 5:],
    atol=1e-5,
  )
  _, extras = _jit_forward(model, analysis=True)(tokens, positions, segments)
  assert float(extras["attention"][:, :, :, 5:, :5].max()) == 0.0


def test_bfloat16_compute_keeps_float32_params_and_logits(tiny_config):
  model = Transformer(tiny_config(dtype="bfloat16"), rngs=nnx.Rngs(0))
  assert {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))} == {jnp.dtype("float32")}
  logits = _jit_forward(model)(_tokens(1, 8))
  assert logits.dtype == jnp.float32
  ref = _jit_forward(Transformer(tiny_config(), rngs=nnx.Rngs(0)))(_tokens(1, 8))
  np.testing.assert_allclose(logits, ref, atol=5e-2)


@pytest.mark.parametrize("tie", [False, True])
def test_bfloat16_logits_are_the_float32_ones_rounded(tiny_config, tie):
  """logits_dtype="bfloat16" rounds the head's output; the loss and its gradient follow closely."""
  tokens = _tokens(2, 8)
  models = {
    d: Transformer(
      tiny_config(dtype="bfloat16", logits_dtype=d, tie_embeddings=tie), rngs=nnx.Rngs(0)
    )
    for d in ("float32", "bfloat16")
  }
  out = {d: _jit_forward(m)(tokens) for d, m in models.items()}
  assert out["float32"].dtype == jnp.float32 and out["bfloat16"].dtype == jnp.bfloat16
  # Same parameters, same float32-accumulated product: only the final rounding differs.
  np.testing.assert_array_equal(out["bfloat16"], out["float32"].astype(jnp.bfloat16))

  def loss_and_grads(model):
    graphdef, state = nnx.split(model)

    def loss(s):
      logits = nnx.merge(graphdef, s)(tokens[:, :-1])
      return jnp.mean(kernels.token_nll(logits, tokens[:, 1:]))

    return jax.jit(jax.value_and_grad(loss))(state)

  (l32, g32), (l16, g16) = (loss_and_grads(models[d]) for d in ("float32", "bfloat16"))
  np.testing.assert_allclose(l16, l32, rtol=2e-3)
  for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32)):
    assert a.dtype == b.dtype == jnp.float32
    np.testing.assert_allclose(a, b, atol=2e-2 * float(jnp.abs(b).max()) + 1e-6)


def test_config_rejects_unknown_logits_dtype(tiny_config):
  with pytest.raises(ValueError, match="logits_dtype='float16'"):
    tiny_config(logits_dtype="float16")


@pytest.mark.parametrize("spec", ["btd,dv->btv", "btd,vd->btv"])
def test_float32_logits_forward_and_bf16_backward_match_float64(spec):
  rng = np.random.default_rng(0)
  x64 = rng.standard_normal((2, 8, 16))
  w64 = rng.standard_normal((16, 40) if spec.endswith("dv->btv") else (40, 16))
  g64 = rng.standard_normal((2, 8, 40))
  x, w = jnp.asarray(x64, jnp.bfloat16), jnp.asarray(w64, jnp.bfloat16)
  xr, wr = np.asarray(x, np.float64), np.asarray(w, np.float64)  # the bf16 values exactly
  out, vjp = jax.vjp(lambda x, w: float32_logits(spec, x, w), x, w)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, np.einsum(spec, xr, wr), rtol=1e-6, atol=1e-5)
  dx, dw = vjp(jnp.asarray(g64, jnp.float32))
  assert dx.dtype == dw.dtype == jnp.bfloat16
  gr = np.asarray(jnp.asarray(g64, jnp.bfloat16), np.float64)  # the cotangent, cast to bf16
  if spec.endswith("dv->btv"):
    ref_dx, ref_dw = np.einsum("btv,dv->btd", gr, wr), np.einsum("btd,btv->dv", xr, gr)
  else:
    ref_dx, ref_dw = np.einsum("btv,vd->btd", gr, wr), np.einsum("btd,btv->vd", xr, gr)
  np.testing.assert_allclose(np.asarray(dx, np.float64), ref_dx, rtol=2e-2, atol=5e-2)
  np.testing.assert_allclose(np.asarray(dw, np.float64), ref_dw, rtol=2e-2, atol=5e-2)
  # In float32 it is plain autodiff of the float32 product.
  xf, wf = x.astype(jnp.float32), w.astype(jnp.float32)
  grads = jax.grad(lambda x, w: jnp.sum(float32_logits(spec, x, w) ** 2), (0, 1))(xf, wf)
  plain = jax.grad(lambda x, w: jnp.sum(jnp.einsum(spec, x, w) ** 2), (0, 1))(xf, wf)
  for a, b in zip(grads, plain):  # two float32 programs: ~1e-7 relative, more near 0 on a GPU
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))


def test_kerple_parameters_are_learnable_and_clamped(tiny_config):
  model = Transformer(tiny_config(encoder="kerple"), rngs=nnx.Rngs(0))
  attn = model.blocks[0].attn
  assert attn.kerple_p.shape == attn.kerple_a.shape == (4,)
  assert float(attn.kerple_p[...].min()) >= attention.KERPLE_MIN
  pos = jnp.arange(6)[None]
  attn.kerple_p[...] = jnp.full((4,), -5.0)
  bias = attn._bias(pos, pos)
  attn.kerple_p[...] = jnp.full((4,), attention.KERPLE_MIN)
  np.testing.assert_array_equal(bias, attn._bias(pos, pos))


def test_auto_attention_implementation_rule():
  facts = dict(dtype=jnp.bfloat16, head_dim=64, length=64, has_bias=False, has_segments=False)
  pick = lambda requested="auto", **kw: kernels.select(  # noqa: E731
    "attention_impl", requested, **{**facts, "backend": "gpu", **kw}
  )
  assert pick() == "cudnn"
  assert pick(dtype=jnp.float32) == "xla"
  assert pick(head_dim=256) == "xla" and pick(head_dim=60) == "xla"
  assert pick(has_bias=True) == "cudnn" and pick(has_segments=True) == "xla"
  assert pick(has_bias=True, length=7) == "xla"  # jax's biased cuDNN path needs even lengths
  assert pick(backend="cpu") == "xla" and pick(backend="tpu") == "xla"
  # cuDNN refused a 7-token sequence on an H200: "auto" falls back to XLA; explicit stays.
  assert pick(length=7) == "xla" and pick(length=8) == "cudnn"
  assert pick("cudnn", length=7) == "cudnn"
  assert pick("splash", dtype=jnp.float32, head_dim=7, length=128) == "splash"
  with pytest.raises(ValueError, match="multiple of 128, got length=16"):
    pick("splash", length=16)
  with pytest.raises(ValueError, match="splash' cannot take a logit bias"):
    pick("splash", length=128, has_bias=True)
  with pytest.raises(ValueError, match="attention_impl='flash'"):
    pick("flash")


def test_selector_names_an_unknown_field():
  with pytest.raises(ValueError, match="field='mlp_impl'"):
    kernels.select("mlp_impl", "auto")
  assert selector.IMPLEMENTATIONS["attention_impl"][0] == "auto"


def test_splash_kernel_in_interpret_mode_matches_xla():
  q, k, v = (jax.random.normal(jax.random.key(i), (1, 128, h, 16)) for i, h in enumerate((4, 2, 2)))
  segments = jnp.asarray([[0] * 50 + [1] * 78], jnp.int32)
  args = dict(segment_ids=segments, scale=0.25)
  np.testing.assert_allclose(
    kernels.dot_product_attention(q, k, v, implementation="splash", **args),
    kernels.dot_product_attention(q, k, v, implementation="xla", **args),
    rtol=1e-5,
    atol=1e-5,
  )
  with pytest.raises(ValueError, match="multiple of 128"):
    kernels.dot_product_attention(
      q[:, :16],
      k[:, :16],
      v[:, :16],
      implementation="splash",
      segment_ids=segments[:, :16],
      scale=0.25,
    )


@pytest.mark.parametrize(
  "overrides, field",
  [
    (dict(num_kv_heads=3), "num_kv_heads=3"),
    (dict(dtype="fp8"), "dtype='fp8'"),
    (dict(attention_impl="flash"), "attention_impl='flash'"),
    (dict(remat="sometimes"), "remat='sometimes'"),
    (dict(vocab_size=0), "vocab_size=0"),
    (dict(encoder="sinusoidal"), "encoder='sinusoidal'"),
    (dict(encoder="hope", encoder_params={"p": 0.5}), "'p'"),
    (dict(encoder="alibi", attention_impl="splash"), "attention_impl='splash'"),
    (dict(encoder="alibi", scaling="yarn", scaling_factor=2.0), "encoder='alibi'"),
  ],
)
def test_config_validation_names_field(tiny_config, overrides, field):
  with pytest.raises(ValueError) as err:
    tiny_config(**overrides)
  assert field in str(err.value)


def test_config_from_mapping_and_hashing():
  cfg = TransformerConfig.from_mapping(
    dict(
      vocab_size=128,
      num_layers=2,
      embed_dim=64,
      num_heads=4,
      encoder="hope",
      encoder_params={"min_periods": 2.0},
    )
  )
  assert cfg.head_dim == 16 and cfg.num_kv_heads == 4 and cfg.mlp_dim == 256
  assert cfg.encoder_params == (("min_periods", 2.0),) and cfg.remat == "none"
  assert hash(cfg) == hash(TransformerConfig.from_mapping(dataclasses.asdict(cfg)))
  with pytest.raises(ValueError, match="unknown TransformerConfig field.*'layers'"):
    TransformerConfig.from_mapping(
      dict(vocab_size=128, layers=2, embed_dim=64, num_heads=4, num_layers=2)
    )


def test_logn_scaling_is_a_no_op_within_the_training_length_and_changes_beyond():
  """Log-length query scaling leaves logits unchanged up to L and changes them past it."""
  base = TransformerConfig(
    vocab_size=64,
    num_layers=1,
    embed_dim=32,
    num_heads=2,
    mlp_dim=64,
    dtype="float32",
    train_length=8,
    encoder="hope",
  )
  scaled = dataclasses.replace(base, logn_scaling=True)
  model = Transformer(base, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(model)
  other = nnx.merge(
    nnx.split(nnx.eval_shape(lambda: Transformer(scaled, rngs=nnx.Rngs(0))))[0], state
  )
  tokens = jax.random.randint(jax.random.key(1), (1, 16), 0, 64)
  a, b = model(tokens), other(tokens)
  np.testing.assert_allclose(a[:, :8], b[:, :8], rtol=1e-5, atol=1e-5)
  assert not np.allclose(a[:, 9:], b[:, 9:], atol=1e-4)
  factors = np.asarray(attention.logn_factor(jnp.arange(16), 8))
  assert np.all(factors[:8] == 1.0) and factors[15] == pytest.approx(np.log(16) / np.log(8))


def _small_bias_model(encoder: str) -> Transformer:
  """A 2-layer float32 model of a bias encoder (ALiBi, KERPLE) on XLA's attention."""
  config = TransformerConfig(
    vocab_size=64,
    num_layers=2,
    embed_dim=32,
    num_heads=4,
    num_kv_heads=2,
    mlp_dim=64,
    dtype="float32",
    train_length=8,
    encoder=encoder,
    attention_impl="xla",
  )
  return Transformer(config, rngs=nnx.Rngs(0))


def _assert_finite_gradients(model: Transformer, tokens: jax.Array) -> None:
  grads = jax.grad(lambda m: jnp.sum(m(tokens)[:, -1]))(model)
  assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("encoder", ["alibi", "kerple"])
def test_blocked_bias_attention_matches_full(encoder, monkeypatch):
  """Long sequences of bias encoders attend in query blocks; the logits must not change."""
  model = _small_bias_model(encoder)
  tokens = jax.random.randint(jax.random.key(2), (2, 32), 0, 64)
  full = model(tokens)
  monkeypatch.setattr(attention, "BIAS_QUERY_BLOCK", 8)
  blocked = model(tokens)
  np.testing.assert_allclose(blocked, full, rtol=1e-5, atol=1e-5)
  _assert_finite_gradients(model, tokens)


def test_mlp_stacked_product_equals_separate_gate_and_up(tiny_config):
  from hope_jax.model.layers import MLP

  mlp = MLP(tiny_config(), rngs=nnx.Rngs(0))
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 64)), jnp.float32)

  def separate(m, x):
    return (jax.nn.silu(x @ m.gate[...]) * (x @ m.up[...])) @ m.down[...]

  # One stacked product against two: other shapes, so another summation order on a GPU.
  np.testing.assert_allclose(mlp(x), separate(mlp, x), rtol=1e-5, atol=1e-5)
  grads = [
    nnx.grad(lambda m, f=f: jnp.sum(f(m, x) ** 2))(mlp) for f in (lambda m, x: m(x), separate)
  ]
  for a, b in zip(*map(jax.tree.leaves, grads)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * float(jnp.abs(b).max()))


@pytest.mark.parametrize("encoder", ["alibi", "kerple"])
def test_shared_positions_build_one_bias_for_the_batch(encoder, monkeypatch):
  """Default positions give the kernel a [1, N, T, T] bias; logits equal those of explicit rows."""
  model = _small_bias_model(encoder)
  tokens = jax.random.randint(jax.random.key(2), (3, 16), 0, 64)
  shapes, kernel = [], kernels.dot_product_attention

  def recording(q, k, v, *, bias=None, **kwargs):
    shapes.append(None if bias is None else bias.shape)
    return kernel(q, k, v, bias=bias, **kwargs)

  monkeypatch.setattr(kernels, "dot_product_attention", recording)
  shared = model(tokens)
  rows = model(tokens, positions=jnp.broadcast_to(jnp.arange(16), (3, 16)))
  assert shapes == [(1, 4, 16, 16)] * 2 + [(3, 4, 16, 16)] * 2
  np.testing.assert_allclose(shared, rows, rtol=1e-6, atol=1e-6)
  _assert_finite_gradients(model, tokens)


@pytest.mark.skipif(jax.default_backend() != "gpu", reason="needs a GPU (JAX_PLATFORMS=cuda,cpu)")
@pytest.mark.parametrize("encoder", ["alibi", "kerple"])
def test_biased_cudnn_attention_matches_xla_on_gpu(encoder, tiny_config):
  """On a GPU, 'auto' runs a bias encoder on cuDNN; its logits and gradients match XLA's."""
  fields = dict(vocab_size=256, embed_dim=128, mlp_dim=256, dtype="bfloat16", train_length=64)
  facts = dict(dtype=jnp.bfloat16, head_dim=32, length=256, has_bias=True, has_segments=False)
  assert kernels.select("attention_impl", "auto", **facts) == "cudnn"
  tokens = jax.random.randint(jax.random.key(3), (4, 256), 0, 256)
  outputs = {}
  for impl in ("auto", "xla"):
    config = tiny_config(**fields, encoder=encoder, attention_impl=impl)
    model = Transformer(config, rngs=nnx.Rngs(0))
    loss = lambda m: jnp.mean(jax.nn.log_softmax(m(tokens).astype(jnp.float32))[..., 0])  # noqa: E731
    value, grads = jax.jit(nnx.value_and_grad(loss))(model)
    outputs[impl] = (float(value), jax.tree.leaves(nnx.state(grads)))
  assert outputs["auto"][0] == pytest.approx(outputs["xla"][0], rel=1e-2)
  for a, b in zip(outputs["auto"][1], outputs["xla"][1]):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    cosine = a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30)
    assert cosine > 0.99, cosine
