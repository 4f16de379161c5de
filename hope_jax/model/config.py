"""The Transformer's hyper-parameters: a frozen, validated dataclass, and counts derived from it."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hope_jax import _mappings as mappings
from hope_jax import kernels
from hope_jax.positional import registry

DTYPES: dict[str, Any] = {"bfloat16": jnp.bfloat16, "float32": jnp.float32, "float16": jnp.float16}
REMAT_POLICIES: dict[str, Any] = {
  "none": None,
  "full": jax.checkpoint_policies.nothing_saveable,
  "dots": jax.checkpoint_policies.checkpoint_dots,
  "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}
LOGITS_DTYPES: tuple[str, ...] = ("float32", "bfloat16")
_POSITIVE_INTS = (
  "vocab_size",
  "num_layers",
  "embed_dim",
  "num_heads",
  "num_kv_heads",
  "head_dim",
  "mlp_dim",
  "train_length",
)
# The default (None) of a field that __post_init__ derives from others: typed Any so that the
# field reads as the int every constructed config holds.
_DERIVED: Any = None


def _require(ok: bool, field: str, value: Any, requirement: str) -> None:
  """Raises ValueError naming the field and value unless ok."""
  if not ok:
    raise ValueError(f"{field} must be {requirement}, got {field}={value!r}")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Hyper-parameters of :class:`Transformer`; validated on construction, hashable."""

  vocab_size: int
  num_layers: int
  embed_dim: int
  num_heads: int
  num_kv_heads: int = _DERIVED  # None (default): num_heads (multi-head attention)
  head_dim: int = _DERIVED  # None (default): embed_dim // num_heads
  mlp_dim: int = _DERIVED  # None (default): 4 * embed_dim
  tie_embeddings: bool = False
  dtype: str = "bfloat16"
  param_dtype: str = "float32"
  remat: bool | str = False  # False/"none", True/"full", "dots", "dots_no_batch"
  train_length: int = 2048
  encoder: str = "rope"
  encoder_params: Any = ()  # dict or tuple of (name, value) items
  scaling: str = "none"
  scaling_factor: float = 1.0
  attention_impl: str = "auto"
  norm_impl: str = "auto"  # "auto" | "xla" | "pallas": see hope_jax.kernels.norm
  logits_dtype: str = "float32"  # "float32" | "bfloat16": see Transformer.logits
  loss_impl: str = "auto"  # "auto" | "xla" | "pallas": the token loss, see hope_jax.kernels.loss
  projection_impl: str = (
    "auto"  # "auto" | "xla" | "pallas": q/k rotation, hope_jax.kernels.projection
  )
  logn_scaling: bool = False  # scale queries by max(1, log(n+1)/log(train_length)) beyond L
  norm_eps: float = 1e-5
  init_std: float = 0.02

  def __post_init__(self):
    """Fills defaults, normalises remat/encoder_params, validates every field."""
    put = functools.partial(object.__setattr__, self)
    if self.num_kv_heads is None:
      put("num_kv_heads", self.num_heads)
    if self.head_dim is None and isinstance(self.num_heads, int) and self.num_heads > 0:
      put("head_dim", self.embed_dim // self.num_heads)
    if self.mlp_dim is None and isinstance(self.embed_dim, int):
      put("mlp_dim", 4 * self.embed_dim)
    if isinstance(self.remat, bool):
      put("remat", "full" if self.remat else "none")
    params = self.encoder_params
    params = params.items() if isinstance(params, Mapping) else (params or ())
    put(
      "encoder_params",
      tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in params)),
    )
    for name in _POSITIVE_INTS:
      value = getattr(self, name)
      _require(
        isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0,
        name,
        value,
        "a positive integer",
      )
      put(name, int(value))
    _require(
      self.num_heads % self.num_kv_heads == 0,
      "num_kv_heads",
      self.num_kv_heads,
      f"a divisor of num_heads={self.num_heads}",
    )
    _require(self.head_dim % 2 == 0, "head_dim", self.head_dim, "even")
    _require(self.dtype in DTYPES, "dtype", self.dtype, f"one of {sorted(DTYPES)}")
    _require(
      self.param_dtype in DTYPES, "param_dtype", self.param_dtype, f"one of {sorted(DTYPES)}"
    )
    _require(
      self.remat in REMAT_POLICIES,
      "remat",
      self.remat,
      f"a bool or one of {sorted(REMAT_POLICIES)}",
    )
    for field, choices in kernels.IMPLEMENTATIONS.items():
      _require(getattr(self, field) in choices, field, getattr(self, field), f"one of {choices}")
    _require(
      self.logits_dtype in LOGITS_DTYPES,
      "logits_dtype",
      self.logits_dtype,
      f"one of {LOGITS_DTYPES}",
    )
    _require(isinstance(self.tie_embeddings, bool), "tie_embeddings", self.tie_embeddings, "a bool")
    _require(isinstance(self.logn_scaling, bool), "logn_scaling", self.logn_scaling, "a bool")
    _require(self.norm_eps > 0, "norm_eps", self.norm_eps, "> 0")
    _require(self.init_std > 0, "init_std", self.init_std, "> 0")
    encoding = self.encoding  # raises ValueError naming a bad encoder, parameter or scaling
    _require(
      not (self.attention_impl == "splash" and encoding.bias),
      "attention_impl",
      self.attention_impl,
      f"not 'splash' for the bias encoder {self.encoder!r}",
    )

  @functools.cached_property
  def encoding(self) -> registry.PositionalEncoding:
    """The positional encoding built from encoder, encoder_params, train_length and scaling."""
    encoding = registry.build_encoding(
      self.encoder,
      head_dim=self.head_dim,
      num_heads=self.num_heads,
      train_length=self.train_length,
      params=dict(self.encoder_params),
    )
    return encoding.with_scaling(self.scaling, factor=self.scaling_factor)

  @property
  def compute_jnp_dtype(self) -> Any:
    """The computation dtype as a jnp dtype."""
    return DTYPES[self.dtype]

  @property
  def param_jnp_dtype(self) -> Any:
    """The parameter dtype as a jnp dtype."""
    return DTYPES[self.param_dtype]

  @classmethod
  def from_mapping(cls, mapping: Any) -> TransformerConfig:
    """Builds a config from a dict or ml_collections ConfigDict; unknown keys raise ValueError."""
    return mappings.dataclass_from_mapping(cls, mapping)


def num_params(config: TransformerConfig, *, non_embedding: bool = False) -> int:
  """Counts parameters; non_embedding drops the input embedding table (kept when tied as head)."""
  c = config
  attn = c.embed_dim * c.head_dim * (2 * c.num_heads + 2 * c.num_kv_heads)
  kerple = 2 * c.num_heads if c.encoding.bias == "kerple" else 0
  block = attn + kerple + 3 * c.embed_dim * c.mlp_dim + 2 * c.embed_dim
  table = c.vocab_size * c.embed_dim
  total = c.num_layers * block + c.embed_dim + table * (1 if c.tie_embeddings else 2)
  return total - table if non_embedding and not c.tie_embeddings else total


def flops_per_token(config: TransformerConfig, seq_len: int) -> int:
  """Training FLOPs per token: 6·N_nonembedding + 6·layers·seq_len·embed_dim (causal)."""
  return (
    6 * num_params(config, non_embedding=True) + 6 * config.num_layers * seq_len * config.embed_dim
  )
