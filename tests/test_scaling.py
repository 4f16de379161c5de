"""Tests of the context-extension transforms against float64 transcriptions of HF's formulas."""

import math

import numpy as np
import pytest

from hope_jax.positional import encoders, scaling

HEAD_DIM, BASE, LENGTH = 64, 10000.0, 512


def hf_default_inv_freq(dim: int, base: float) -> np.ndarray:
  """HF: 1 / base ** (arange(0, dim, 2) / dim), in float64."""
  return 1.0 / base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)


def hf_yarn(dim, base, factor, original_max, beta_fast=32.0, beta_slow=1.0, truncate=True):
  """Float64 transcription of transformers.modeling_rope_utils._compute_yarn_parameters."""

  def get_mscale(scale, mscale=1):
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0

  def find_correction_dim(num_rotations, dim, base, max_position_embeddings):
    return (dim * math.log(max_position_embeddings / (num_rotations * 2 * math.pi))) / (
      2 * math.log(base)
    )

  def find_correction_range(low_rot, high_rot, dim, base, max_position_embeddings, truncate):
    low = find_correction_dim(low_rot, dim, base, max_position_embeddings)
    high = find_correction_dim(high_rot, dim, base, max_position_embeddings)
    if truncate:
      low, high = math.floor(low), math.ceil(high)
    return max(low, 0), min(high, dim - 1)

  def linear_ramp_factor(min_, max_, dim):
    if min_ == max_:
      max_ += 0.001
    return np.clip((np.arange(dim, dtype=np.float64) - min_) / (max_ - min_), 0, 1)

  pos_freqs = base ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
  inv_freq_extrapolation = 1.0 / pos_freqs
  inv_freq_interpolation = 1.0 / (factor * pos_freqs)
  low, high = find_correction_range(beta_fast, beta_slow, dim, base, original_max, truncate)
  inv_freq_extrapolation_factor = 1 - linear_ramp_factor(low, high, dim // 2)
  inv_freq = (
    inv_freq_interpolation * (1 - inv_freq_extrapolation_factor)
    + inv_freq_extrapolation * inv_freq_extrapolation_factor
  )
  return inv_freq, get_mscale(factor)


def hf_llama3(dim, base, factor, old_context_len, low_freq_factor=1.0, high_freq_factor=4.0):
  """Float64 transcription of transformers.modeling_rope_utils._compute_llama3_parameters."""
  inv_freq = hf_default_inv_freq(dim, base)
  low_freq_wavelen = old_context_len / low_freq_factor
  high_freq_wavelen = old_context_len / high_freq_factor
  wavelen = 2 * math.pi / inv_freq
  inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
  smooth_factor = (old_context_len / wavelen - low_freq_factor) / (
    high_freq_factor - low_freq_factor
  )
  smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
  is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
  return np.where(is_medium, smoothed, inv_freq_llama)


def hf_dynamic_ntk(dim, base, factor, seq_len, max_position_embeddings):
  """Float64 transcription of HF _compute_dynamic_ntk_parameters at a sequence length."""
  seq_len = max(seq_len, max_position_embeddings)
  base = base * ((factor * seq_len / max_position_embeddings) - (factor - 1)) ** (dim / (dim - 2))
  return hf_default_inv_freq(dim, base)


ROPE = encoders.rope_frequencies(HEAD_DIM, base=BASE)


@pytest.mark.parametrize("factor", [1.0, 2.0, 8.0, 32.0])
def test_linear_matches_hf(factor):
  np.testing.assert_allclose(
    scaling.linear_scaling(ROPE, factor=factor),
    hf_default_inv_freq(HEAD_DIM, BASE) / factor,
    rtol=2e-7,
  )


@pytest.mark.parametrize("factor", [2.0, 8.0, 32.0])
def test_ntk_aware_matches_base_rescaling(factor):
  expected = hf_default_inv_freq(HEAD_DIM, BASE * factor ** (HEAD_DIM / (HEAD_DIM - 2)))
  np.testing.assert_allclose(scaling.ntk_aware_scaling(ROPE, factor=factor), expected, rtol=1e-6)


@pytest.mark.parametrize("seq_len", [256, 512, 1024, 4096])
def test_dynamic_ntk_matches_hf(seq_len):
  effective = scaling.dynamic_ntk_factor(
    factor=4.0, sequence_length=seq_len, original_length=LENGTH
  )
  np.testing.assert_allclose(
    scaling.ntk_aware_scaling(ROPE, factor=effective),
    hf_dynamic_ntk(HEAD_DIM, BASE, 4.0, seq_len, LENGTH),
    rtol=1e-6,
  )


@pytest.mark.parametrize(
  "dim, base, factor, length",
  [
    (64, 10000.0, 4.0, 512),
    (64, 10000.0, 32.0, 512),
    (128, 500000.0, 8.0, 4096),
    (128, 10000.0, 16.0, 2048),
  ],
)
def test_yarn_matches_hf(dim, base, factor, length):
  freqs = encoders.rope_frequencies(dim, base=base)
  expected, mscale = hf_yarn(dim, base, factor, length)
  np.testing.assert_allclose(
    scaling.yarn_scaling(freqs, factor=factor, original_length=length, base=base),
    expected,
    rtol=1e-6,
  )
  assert scaling.yarn_attention_factor(factor) == pytest.approx(mscale, rel=1e-12)
  assert scaling.yarn_attention_factor(factor) == pytest.approx(0.1 * math.log(factor) + 1)


@pytest.mark.parametrize("factor, old", [(8.0, 8192), (4.0, 512), (32.0, 2048)])
def test_llama3_matches_hf(factor, old):
  freqs = encoders.rope_frequencies(128, base=500000.0)
  np.testing.assert_allclose(
    scaling.llama3_scaling(freqs, factor=factor, original_length=old),
    hf_llama3(128, 500000.0, factor, old),
    rtol=1e-6,
  )


@pytest.mark.parametrize("name", sorted(scaling.SCALINGS))
def test_hope_unrotated_bands_stay_unrotated(name):
  hope = encoders.hope_frequencies(HEAD_DIM, train_length=LENGTH)
  out = scaling.scale_frequencies(name, hope, factor=8.0, original_length=LENGTH, base=BASE)
  assert np.all(out.frequencies[hope == 0] == 0)
  assert np.all(out.frequencies[hope > 0] > 0)
  # On the kept bands each transform agrees with the same transform of RoPE.
  rope_out = scaling.scale_frequencies(name, ROPE, factor=8.0, original_length=LENGTH, base=BASE)
  np.testing.assert_array_equal(out.frequencies[hope > 0], rope_out.frequencies[hope > 0])


def test_yarn_keeps_fast_bands_and_interpolates_slow_ones():
  out = scaling.yarn_scaling(ROPE, factor=8.0, original_length=LENGTH, base=BASE)
  turns = ROPE.astype(np.float64) * LENGTH / (2 * math.pi)
  np.testing.assert_array_equal(out[turns > 64], ROPE[turns > 64])
  np.testing.assert_allclose(out[turns < 0.5], ROPE[turns < 0.5] / 8.0, rtol=1e-6)


@pytest.mark.parametrize(
  "call, field",
  [
    (lambda: scaling.linear_scaling(ROPE, factor=0.5), "factor"),
    (
      lambda: scaling.scale_frequencies("rope2", ROPE, factor=2.0, original_length=8, base=BASE),
      "scaling",
    ),
    (
      lambda: scaling.yarn_scaling(ROPE, factor=2.0, original_length=0, base=BASE),
      "original_length",
    ),
    (lambda: scaling.ntk_aware_scaling(ROPE, factor=2.0, rotary_dim=3), "rotary_dim"),
  ],
)
def test_bad_values_name_the_field(call, field):
  with pytest.raises(ValueError, match=field):
    call()
