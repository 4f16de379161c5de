"""Context-extension transforms on a frequency array, for RoPE and HoPE alike.

Each transform maps a float32 frequency array ``[head_dim // 2]`` (0 = unrotated band) to another,
following Hugging Face ``transformers.modeling_rope_utils``; bands at frequency 0 stay at 0, so
HoPE's unrotated bands are untouched.  ``rotary_dim`` is the dimension the frequencies were
computed over (head_dim, or the rotated part for partial rotary): band i is the i-th entry.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
from jax.typing import ArrayLike

from hope_jax.positional.encoders import concrete_frequencies


def _check_factor(factor: float) -> float:
  """Returns factor as float, or raises ValueError naming the field when it is < 1."""
  if not np.isfinite(factor) or factor < 1.0:
    raise ValueError(f"scale factor must be a finite number >= 1, got factor={factor!r}")
  return float(factor)


def _check_length(name: str, value: int) -> int:
  """Returns value as int, or raises ValueError naming the field when it is not > 0."""
  if isinstance(value, bool) or int(value) != value or value <= 0:
    raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")
  return int(value)


def _rotary_dim(freqs: np.ndarray, rotary_dim: int | None) -> int:
  """Returns the dimension the frequencies were computed over (default: 2 × bands)."""
  if rotary_dim is None:
    return 2 * int(freqs.shape[0])
  if int(rotary_dim) != rotary_dim or rotary_dim <= 2 or rotary_dim % 2:
    raise ValueError(f"rotary_dim must be an even integer > 2, got rotary_dim={rotary_dim!r}")
  return int(rotary_dim)


def linear_scaling(frequencies: ArrayLike, *, factor: float) -> np.ndarray:
  """Position interpolation (Chen et al. 2023): every frequency divided by factor."""
  freqs = concrete_frequencies(frequencies).astype(np.float64)
  return (freqs / _check_factor(factor)).astype(np.float32)


def ntk_aware_scaling(
  frequencies: ArrayLike, *, factor: float, rotary_dim: int | None = None
) -> np.ndarray:
  """NTK-aware base scaling: base → base·factor^(d/(d−2)), i.e. θ_i → θ_i·factor^(−2i/(d−2))."""
  freqs = concrete_frequencies(frequencies).astype(np.float64)
  factor, dim = _check_factor(factor), _rotary_dim(freqs, rotary_dim)
  band = np.arange(freqs.shape[0], dtype=np.float64)
  return (freqs * factor ** (-2.0 * band / (dim - 2))).astype(np.float32)


def dynamic_ntk_factor(*, factor: float, sequence_length: int, original_length: int) -> float:
  """The effective NTK factor of HF "dynamic" scaling at a sequence length (1 within original_length).

  HF sets base' = base·(factor·T/L − (factor − 1))^(d/(d−2)) once T > L; feed the returned value to
  :func:`ntk_aware_scaling`.
  """
  factor = _check_factor(factor)
  t = _check_length("sequence_length", sequence_length)
  length = _check_length("original_length", original_length)
  return max(1.0, factor * max(t, length) / length - (factor - 1.0))


def yarn_attention_factor(factor: float, *, mscale: float = 1.0) -> float:
  """YaRN's q/k scale √(1/t) = 0.1·mscale·ln(factor) + 1 (1 for factor ≤ 1); logits scale by its square."""
  factor = float(factor)
  return 1.0 if factor <= 1.0 else 0.1 * mscale * math.log(factor) + 1.0


def yarn_scaling(
  frequencies: ArrayLike,
  *,
  factor: float,
  original_length: int,
  base: float,
  rotary_dim: int | None = None,
  beta_fast: float = 32.0,
  beta_slow: float = 1.0,
  truncate: bool = True,
) -> np.ndarray:
  """YaRN's NTK-by-parts frequencies (Peng et al. 2023), as in HF ``_compute_yarn_parameters``.

  Bands that turn more than beta_fast times within original_length keep their frequency, bands that
  turn fewer than beta_slow times are interpolated (÷ factor), with a linear ramp in band index
  between them.  The attention temperature is :func:`yarn_attention_factor`.
  """
  freqs = concrete_frequencies(frequencies).astype(np.float64)
  factor, dim = _check_factor(factor), _rotary_dim(freqs, rotary_dim)
  length = _check_length("original_length", original_length)

  def correction_dim(num_rotations: float) -> float:
    return (dim * math.log(length / (num_rotations * 2 * math.pi))) / (2 * math.log(base))

  low, high = correction_dim(beta_fast), correction_dim(beta_slow)
  if truncate:
    low, high = math.floor(low), math.ceil(high)
  low, high = max(low, 0), min(high, dim - 1)
  if low == high:
    high += 0.001
  ramp = np.clip((np.arange(freqs.shape[0], dtype=np.float64) - low) / (high - low), 0.0, 1.0)
  extrapolation = 1.0 - ramp
  scaled = freqs / factor * (1.0 - extrapolation) + freqs * extrapolation
  return scaled.astype(np.float32)


def llama3_scaling(
  frequencies: ArrayLike,
  *,
  factor: float,
  original_length: int,
  low_freq_factor: float = 1.0,
  high_freq_factor: float = 4.0,
) -> np.ndarray:
  """Llama 3.1 scaling (HF ``_compute_llama3_parameters``): long waves ÷ factor, short kept, smooth between."""
  freqs = concrete_frequencies(frequencies).astype(np.float64)
  factor = _check_factor(factor)
  length = _check_length("original_length", original_length)
  if not 0 < low_freq_factor < high_freq_factor:
    raise ValueError(
      "need 0 < low_freq_factor < high_freq_factor, got "
      f"low_freq_factor={low_freq_factor!r}, high_freq_factor={high_freq_factor!r}"
    )
  low_freq_wavelen = length / low_freq_factor
  high_freq_wavelen = length / high_freq_factor
  with np.errstate(divide="ignore"):
    wavelen = np.where(freqs > 0, 2 * math.pi / np.where(freqs > 0, freqs, 1.0), np.inf)
  scaled = np.where(wavelen > low_freq_wavelen, freqs / factor, freqs)
  smooth = (length / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
  smoothed = (1 - smooth) * scaled / factor + smooth * scaled
  medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
  return np.where(medium, smoothed, scaled).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class ScaledFrequencies:
  """A transformed frequency array and the factor by which q and k are each multiplied."""

  frequencies: np.ndarray
  attention_factor: float = 1.0


def _none(
  freqs: ArrayLike, *, factor: float, original_length: int, base: float, rotary_dim: int | None
) -> ScaledFrequencies:
  del factor, original_length, base, rotary_dim
  return ScaledFrequencies(concrete_frequencies(freqs))


def _linear(
  freqs: ArrayLike, *, factor: float, original_length: int, base: float, rotary_dim: int | None
) -> ScaledFrequencies:
  del original_length, base, rotary_dim
  return ScaledFrequencies(linear_scaling(freqs, factor=factor))


def _ntk(
  freqs: ArrayLike, *, factor: float, original_length: int, base: float, rotary_dim: int | None
) -> ScaledFrequencies:
  del original_length, base
  return ScaledFrequencies(ntk_aware_scaling(freqs, factor=factor, rotary_dim=rotary_dim))


def _yarn(
  freqs: ArrayLike, *, factor: float, original_length: int, base: float, rotary_dim: int | None
) -> ScaledFrequencies:
  scaled = yarn_scaling(
    freqs, factor=factor, original_length=original_length, base=base, rotary_dim=rotary_dim
  )
  return ScaledFrequencies(scaled, yarn_attention_factor(factor))


def _llama3(
  freqs: ArrayLike, *, factor: float, original_length: int, base: float, rotary_dim: int | None
) -> ScaledFrequencies:
  del base, rotary_dim
  return ScaledFrequencies(llama3_scaling(freqs, factor=factor, original_length=original_length))


SCALINGS: dict[str, Callable[..., ScaledFrequencies]] = {
  "none": _none,
  "linear": _linear,
  "ntk": _ntk,
  "yarn": _yarn,
  "llama3": _llama3,
}


def scale_frequencies(
  name: str,
  frequencies: ArrayLike,
  *,
  factor: float,
  original_length: int,
  base: float,
  rotary_dim: int | None = None,
) -> ScaledFrequencies:
  """Applies the context-extension transform called ``name`` (a key of SCALINGS)."""
  if name not in SCALINGS:
    raise ValueError(f"scaling must be one of {sorted(SCALINGS)}, got scaling={name!r}")
  return SCALINGS[name](
    frequencies,
    factor=_check_factor(factor),
    original_length=original_length,
    base=base,
    rotary_dim=rotary_dim,
  )
