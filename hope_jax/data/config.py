"""The data a run trains and evaluates on: a frozen, validated description of source and tokenizer."""

from __future__ import annotations

import dataclasses
from typing import Any

from hope_jax import _mappings as mappings
from hope_jax.data import batches, text_sources
from hope_jax.data import tokenizer as tokenizers

SOURCES: tuple[str, ...] = tuple(text_sources.SOURCES)
# The fields that identify a dataset (the token cache is keyed by them).
SOURCE_FIELDS: tuple[str, ...] = (
  "source",
  "path",
  "name",
  "text_field",
  "data_dir",
  "validation_percent",
)
# What only a tree of source files reads (hope_jax.data.source_tree); part of its identity only.
SOURCE_TREE_FIELDS: tuple[str, ...] = ("suffixes", "max_file_bytes", "exclude")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the text comes from, how it is tokenized and cached, and the training sequence length."""

  source: str = "embedded"  # "embedded" | "local" | "tfds" | "source_tree"
  path: str = ""  # local: {train,validation}.jsonl.xz or files; source_tree: the root directory
  name: str = ""  # tfds: a catalog name such as "pg19"
  text_field: str = ""  # override the text field ("" = the source's default)
  data_dir: str = ""  # tfds data dir ("" = TFDS default)
  validation_percent: float = 1.0  # hash split for sources without a validation split
  tokenizer: str = "default"  # "default" (shipped) or a path to a SentencePiece model
  cache_dir: str = ""  # token cache ("" = $HOPE_JAX_CACHE or ~/.cache/hope_jax)
  seq_len: int = 128
  with_segments: bool = False  # mask attention across packed documents
  suffixes: str = ".py"  # source_tree: comma-separated file-name suffixes
  max_file_bytes: int = 500_000  # source_tree: larger (generated) files are left out, and listed
  exclude: str = ""  # source_tree: comma-separated globs of paths or names to leave out

  def __post_init__(self):
    """Validates the source and the sequence length, naming the field."""
    if self.source not in SOURCES:
      raise ValueError(
        f"config.data.source must be one of {SOURCES}, got data.source={self.source!r}"
      )
    if isinstance(self.seq_len, bool) or not isinstance(self.seq_len, int) or self.seq_len <= 0:
      raise ValueError(
        f"config.data.seq_len must be a positive integer, got data.seq_len={self.seq_len!r}"
      )

  @classmethod
  def from_mapping(cls, mapping: Any) -> DataConfig:
    """Builds a DataConfig from a dict or ConfigDict; unknown keys raise ValueError naming them."""
    return mappings.dataclass_from_mapping(cls, mapping)

  def spec(self) -> dict[str, Any]:
    """Returns the fields that identify the dataset."""
    fields = SOURCE_FIELDS + (SOURCE_TREE_FIELDS if self.source == "source_tree" else ())
    return {k: getattr(self, k) for k in fields}

  def load_tokenizer(self) -> tokenizers.Tokenizer:
    """Loads the configured tokenizer."""
    return tokenizers.load_tokenizer(self.tokenizer)

  def load_split(
    self,
    split: str,
    tok: tokenizers.Tokenizer | None = None,
    *,
    vocab_size: int | None = None,
    progress: bool = False,
  ) -> batches.TokenizedSplit:
    """Tokenizes (or loads from the cache) one split; the tokenizer must fit ``vocab_size``.

    ``progress`` reports the tokenization on stderr (see ``token_cache.tokenize_split``).
    """
    tok = tok or self.load_tokenizer()
    if vocab_size is not None and tok.vocab_size > vocab_size:
      raise ValueError(
        f"config.model.vocab_size={vocab_size} is smaller than the tokenizer's "
        f"vocabulary ({tok.vocab_size}, data.tokenizer={self.tokenizer!r})"
      )
    return batches.tokenize_split(
      self.spec(), split, tok, cache_dir=self.cache_dir or None, progress=progress
    )
