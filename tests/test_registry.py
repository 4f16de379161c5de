"""Tests of the encoder registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hope_jax.positional import encoders, registry

CTX = dict(head_dim=64, num_heads=8, train_length=512)


def test_names():
  assert set(registry.encoder_names()) >= {
    "rope",
    "hope",
    "nope",
    "p_rope",
    "partial_rope",
    "alibi",
    "kerple",
  }


@pytest.mark.parametrize(
  "name, rotated, bias",
  [
    ("rope", 32, None),
    ("hope", 16, None),
    ("nope", 0, None),
    ("p_rope", 24, None),
    ("partial_rope", 8, None),
    ("alibi", 0, "alibi"),
    ("kerple", 0, "kerple"),
  ],
)
def test_builds_every_encoder(name, rotated, bias):
  enc = registry.build_encoding(name, **CTX)
  assert enc.num_rotated_bands == rotated and enc.bias == bias
  x = jax.random.normal(jax.random.key(0), (1, 5, 8, 64))
  out = enc.rotate(x, jnp.arange(5))
  if rotated == 0:
    np.testing.assert_array_equal(out, x)
  else:
    assert not np.allclose(out, x)


def test_hope_uses_the_configured_train_length():
  short = registry.build_encoding("hope", head_dim=64, num_heads=8, train_length=512)
  long = registry.build_encoding("hope", head_dim=64, num_heads=8, train_length=4096)
  assert (short.num_rotated_bands, long.num_rotated_bands) == (16, 23)
  explicit = registry.build_encoding("hope", **CTX, params={"num_kept_bands": 4})
  assert explicit.num_rotated_bands == 4


def test_scaling_applies_to_rope_and_hope():
  for name in ("rope", "hope"):
    enc = registry.build_encoding(name, **CTX)
    yarn = enc.with_scaling("yarn", factor=8.0)
    assert yarn.scaling == "yarn" and yarn.attention_factor > 1.0
    assert yarn.logit_scale == pytest.approx(yarn.attention_factor**2)
    assert np.all(yarn.frequencies <= enc.frequencies)
    assert np.all((yarn.frequencies == 0) == (enc.frequencies == 0))
    linear = enc.with_scaling("linear", factor=4.0)
    np.testing.assert_allclose(linear.frequencies, enc.frequencies / 4.0)
    assert enc.with_scaling("none", factor=1.0) is enc


def test_scaling_rejects_non_rotary():
  with pytest.raises(ValueError, match="scaling"):
    registry.build_encoding("alibi", **CTX).with_scaling("yarn", factor=2.0)


def test_p_rope_parameter():
  enc = registry.build_encoding("p_rope", **CTX, p=0.5)
  np.testing.assert_array_equal(enc.frequencies, encoders.p_rope_frequencies(64, p=0.5))


@pytest.mark.parametrize(
  "name, kwargs, field",
  [
    ("rop", {}, "encoder"),
    ("hope", {"p": 0.5}, "'p'"),
    ("hope", {"train_length": 0}, "train_length"),
    ("rope", {"head_dim": 63}, "head_dim"),
    ("rope", {"num_heads": 0}, "num_heads"),
    ("p_rope", {"p": 2.0}, "p"),
    ("rope", {"layout": "zigzag"}, "layout"),
    ("partial_rope", {"fraction": -1.0}, "fraction"),
  ],
)
def test_bad_configs_name_the_field(name, kwargs, field):
  args = {**CTX, **kwargs}
  with pytest.raises(ValueError, match=field):
    registry.build_encoding(name, **args)
