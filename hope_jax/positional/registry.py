"""A registry that turns a config's encoder name and parameters into a PositionalEncoding.

    encoding = build_encoding("hope", head_dim=64, num_heads=8, train_length=512, base=10000.0)
    q = encoding.rotate(q, positions)          # rotary families (identity for NoPE, ALiBi, KERPLE)
    encoding.bias                              # None, "alibi" or "kerple": added to the logits
    encoding.with_scaling("yarn", factor=8.0)  # inference-time context extension (rotary only)

New encoders register a builder with :func:`register_encoder`; its keyword arguments are the
encoder's parameters, and unknown parameters are rejected by name.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.typing import ArrayLike

from hope_jax.positional import biases, encoders, scaling

BIAS_KINDS = (None, "alibi", "kerple")


@dataclasses.dataclass(frozen=True)
class PositionalEncoding:
  """A built encoder: rotary frequencies and/or a logit-bias kind, plus static metadata."""

  name: str
  frequencies: np.ndarray  # [head_dim // 2]; all zeros when nothing rotates
  layout: str = "split_half"
  bias: str | None = None
  alibi_slopes: np.ndarray | None = None
  base: float = 10000.0
  rotary_dim: int | None = None  # the dim frequencies were computed over (partial rotary)
  train_length: int = 0
  attention_factor: float = 1.0  # q and k are each scaled by this (YaRN); logits by its square
  scaling: str = "none"
  scaling_factor: float = 1.0

  @property
  def rotates(self) -> bool:
    """Whether any band rotates."""
    return bool(np.any(self.frequencies > 0))

  @property
  def logit_scale(self) -> float:
    """Multiplier of the attention logits on top of 1/√head_dim."""
    return self.attention_factor**2

  @property
  def num_rotated_bands(self) -> int:
    """How many bands rotate."""
    return int(np.count_nonzero(self.frequencies))

  def rotate(self, x: jax.Array, positions: ArrayLike) -> jax.Array:
    """Rotates q or k [..., seq, heads, head_dim] by the encoding's frequencies."""
    return encoders.apply_rotary(
      x, positions, self.frequencies, layout=typing.cast(encoders.Layout, self.layout)
    )

  def with_scaling(
    self, name: str, *, factor: float, original_length: int | None = None
  ) -> PositionalEncoding:
    """Returns this encoding with a context-extension transform applied to its frequencies."""
    if name == "none":
      return self
    if self.scaling != "none":
      raise ValueError(f"encoding {self.name!r} is already scaled with {self.scaling!r}")
    if self.bias is not None or not self.rotates:
      raise ValueError(f"scaling={name!r} needs a rotary encoder, got encoder={self.name!r}")
    length = original_length if original_length is not None else self.train_length
    scaled = scaling.scale_frequencies(
      name,
      self.frequencies,
      factor=factor,
      original_length=length,
      base=self.base,
      rotary_dim=self.rotary_dim,
    )
    return dataclasses.replace(
      self,
      frequencies=scaled.frequencies,
      attention_factor=scaled.attention_factor,
      scaling=name,
      scaling_factor=float(factor),
    )


@dataclasses.dataclass(frozen=True)
class EncoderContext:
  """Model facts every builder may use."""

  head_dim: int
  num_heads: int
  train_length: int


Builder = Callable[..., PositionalEncoding]
_BUILDERS: dict[str, Builder] = {}


def register_encoder(name: str) -> Callable[[Builder], Builder]:
  """Decorator: registers ``builder(ctx, **params) -> PositionalEncoding`` under ``name``."""

  def wrap(builder: Builder) -> Builder:
    if name in _BUILDERS:
      raise ValueError(f"encoder {name!r} is already registered")
    _BUILDERS[name] = builder
    return builder

  return wrap


def encoder_names() -> list[str]:
  """Returns the registered encoder names."""
  return sorted(_BUILDERS)


def encoder_parameters(name: str) -> dict[str, Any]:
  """Returns the parameters an encoder accepts, with their defaults."""
  builder = _lookup(name)
  params = list(inspect.signature(builder).parameters.values())[1:]
  return {p.name: p.default for p in params}


def all_encoder_parameters() -> dict[str, Any]:
  """Returns every parameter any registered encoder takes, with its default (equal across encoders)."""
  defaults: dict[str, Any] = {}
  for name in encoder_names():
    for key, default in encoder_parameters(name).items():
      if key in defaults and defaults[key] != default:
        raise ValueError(
          f"encoders disagree on the default of parameter {key!r}: "
          f"{defaults[key]!r} and {default!r} ({name!r})"
        )
      defaults[key] = default
  return defaults


def parameter_type(name: str, parameter: str) -> type:
  """Returns the declared type of an encoder's parameter, without None (``int | None`` -> int)."""
  hints = typing.get_type_hints(_lookup(name))
  if parameter not in hints:
    raise ValueError(f"encoder {name!r} has no parameter {parameter!r}")
  kinds = [t for t in typing.get_args(hints[parameter]) if t is not type(None)]
  return typing.cast(type, kinds[0] if kinds else hints[parameter])


def _lookup(name: str) -> Callable[..., PositionalEncoding]:
  if name not in _BUILDERS:
    raise ValueError(f"encoder must be one of {encoder_names()}, got encoder={name!r}")
  return _BUILDERS[name]


def _check_layout(layout: str) -> str:
  if layout not in encoders.LAYOUTS:
    raise ValueError(f"layout must be one of {encoders.LAYOUTS}, got layout={layout!r}")
  return layout


def build_encoding(
  name: str,
  *,
  head_dim: int,
  num_heads: int,
  train_length: int,
  params: Mapping[str, Any] | None = None,
  **kwargs: Any,
) -> PositionalEncoding:
  """Builds the encoder ``name`` for a model; ``params``/``kwargs`` are the encoder's parameters."""
  builder = _lookup(name)
  given = {**(params or {}), **kwargs}
  accepted = encoder_parameters(name)
  unknown = sorted(set(given) - set(accepted))
  if unknown:
    raise ValueError(
      f"encoder {name!r} got unknown parameter(s) {unknown}; it accepts {sorted(accepted)}"
    )
  encoders._check_head_dim(head_dim)
  encoders._check_train_length(train_length)
  if isinstance(num_heads, bool) or int(num_heads) != num_heads or num_heads <= 0:
    raise ValueError(f"num_heads must be a positive integer, got num_heads={num_heads!r}")
  ctx = EncoderContext(int(head_dim), int(num_heads), int(train_length))
  return builder(ctx, **given)


@register_encoder("rope")
def _rope(
  ctx: EncoderContext, *, base: float = 10000.0, layout: str = "split_half"
) -> PositionalEncoding:
  return PositionalEncoding(
    "rope",
    encoders.rope_frequencies(ctx.head_dim, base=base),
    _check_layout(layout),
    base=base,
    train_length=ctx.train_length,
  )


@register_encoder("hope")
def _hope(
  ctx: EncoderContext,
  *,
  base: float = 10000.0,
  num_kept_bands: int | None = None,
  min_periods: float = 1.0,
  layout: str = "split_half",
) -> PositionalEncoding:
  freqs = encoders.hope_frequencies(
    ctx.head_dim,
    train_length=ctx.train_length,
    base=base,
    num_kept_bands=num_kept_bands,
    min_periods=min_periods,
  )
  return PositionalEncoding(
    "hope", freqs, _check_layout(layout), base=base, train_length=ctx.train_length
  )


@register_encoder("nope")
def _nope(ctx: EncoderContext) -> PositionalEncoding:
  return PositionalEncoding(
    "nope", encoders.nope_frequencies(ctx.head_dim), train_length=ctx.train_length
  )


@register_encoder("p_rope")
def _p_rope(
  ctx: EncoderContext, *, p: float = 0.75, base: float = 10000.0, layout: str = "split_half"
) -> PositionalEncoding:
  return PositionalEncoding(
    "p_rope",
    encoders.p_rope_frequencies(ctx.head_dim, p=p, base=base),
    _check_layout(layout),
    base=base,
    train_length=ctx.train_length,
  )


@register_encoder("partial_rope")
def _partial_rope(
  ctx: EncoderContext, *, fraction: float = 0.25, base: float = 10000.0, layout: str = "split_half"
) -> PositionalEncoding:
  freqs = encoders.partial_rotary_frequencies(ctx.head_dim, fraction=fraction, base=base)
  rotary_dim = int(fraction * ctx.head_dim) // 2 * 2
  return PositionalEncoding(
    "partial_rope",
    freqs,
    _check_layout(layout),
    base=base,
    rotary_dim=rotary_dim if rotary_dim > 2 else None,
    train_length=ctx.train_length,
  )


@register_encoder("alibi")
def _alibi(ctx: EncoderContext) -> PositionalEncoding:
  return PositionalEncoding(
    "alibi",
    encoders.nope_frequencies(ctx.head_dim),
    bias="alibi",
    alibi_slopes=biases.alibi_slopes(ctx.num_heads),
    train_length=ctx.train_length,
  )


@register_encoder("kerple")
def _kerple(ctx: EncoderContext) -> PositionalEncoding:
  return PositionalEncoding(
    "kerple", encoders.nope_frequencies(ctx.head_dim), bias="kerple", train_length=ctx.train_length
  )
