"""Stateless training batches and evaluation windows over a tokenized split.

Training batches are a pure function of ``(seed, step)``: the token stream is cut into
non-overlapping chunks of ``seq_len + 1`` tokens, chunk order is a Philox permutation keyed by
``(seed, epoch)``, and global row ``r`` of step ``s`` is element ``s * batch_size + r`` of the
infinite sequence of permuted epochs.  Models read ``inputs = tokens[:, :-1]`` and
``labels = tokens[:, 1:]``; ``segment_ids``/``positions`` are aligned with ``tokens``.

Evaluation windows follow the same convention: a window of ``length`` tokens is scored on
predicting tokens ``1 .. length-1`` from the tokens before them (``length - 1`` predictions).
The token cache lives in :mod:`hope_jax.data.token_cache`; its names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from hope_jax.data.token_cache import (  # noqa: F401  (re-exported)
  CACHE_ENV,
  CACHE_FORMAT,
  DTYPES,
  TokenizedSplit,
  TokenizerLike,
  default_cache_dir,
  token_dtype,
  tokenize_split,
)

# ----------------------------------------------------------------------------------------------
# Training batches.


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, num_chunks: int) -> np.ndarray:
  """The chunk order of one epoch: a Philox permutation keyed by ``(seed, epoch)`` (memoized)."""
  rng = np.random.Generator(np.random.Philox(key=np.array([seed, epoch], dtype=np.uint64)))
  perm = rng.permutation(num_chunks)
  perm.setflags(write=False)
  return perm


def num_chunks(split: TokenizedSplit, *, seq_len: int) -> int:
  """Number of non-overlapping ``seq_len + 1`` chunks in the token stream (the tail is dropped)."""
  return split.num_tokens // (seq_len + 1)


def chunk_indices(*, seed: int, rows: np.ndarray, count: int) -> np.ndarray:
  """Chunk index of each global row of the infinite sequence of permuted epochs."""
  epochs, within = np.divmod(rows, count)
  out = np.empty_like(rows)
  for epoch in np.unique(epochs):
    sel = epochs == epoch
    out[sel] = epoch_permutation(seed, int(epoch), count)[within[sel]]
  return out


def segments_and_positions(tokens: np.ndarray, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Per-row segment ids (1, 2, ... after each EOS) and positions restarting at 0 after each EOS."""
  rows, width = tokens.shape
  starts = np.zeros((rows, width), dtype=bool)
  starts[:, 0] = True
  starts[:, 1:] = tokens[:, :-1] == eos_id
  segment_ids = np.cumsum(starts, axis=1, dtype=np.int32)
  index = np.broadcast_to(np.arange(width, dtype=np.int32), (rows, width))
  last_start = np.maximum.accumulate(np.where(starts, index, 0), axis=1)
  return segment_ids, (index - last_start).astype(np.int32)


def train_batch(
  split: TokenizedSplit,
  *,
  seed: int,
  step: int,
  batch_size: int,
  seq_len: int,
  process_index: int = 0,
  process_count: int = 1,
  with_segments: bool = False,
) -> dict[str, np.ndarray]:
  """This process's rows of the global batch of ``step``: int32 ``tokens`` [rows, seq_len+1]."""
  for name, value in (("seed", seed), ("step", step)):
    if value < 0:
      raise ValueError(f"{name}={value} must be >= 0")
  for name, value in (
    ("batch_size", batch_size),
    ("seq_len", seq_len),
    ("process_count", process_count),
  ):
    if value < 1:
      raise ValueError(f"{name}={value} must be >= 1")
  if batch_size % process_count:
    raise ValueError(f"batch_size={batch_size} must be divisible by process_count={process_count}")
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count})")
  count = num_chunks(split, seq_len=seq_len)
  if count == 0:
    raise ValueError(f"seq_len={seq_len} is too long: the split has only {split.num_tokens} tokens")
  local = batch_size // process_count
  rows = step * batch_size + process_index * local + np.arange(local, dtype=np.int64)
  starts = chunk_indices(seed=seed, rows=rows, count=count) * (seq_len + 1)
  tokens = np.asarray(split.tokens[starts[:, None] + np.arange(seq_len + 1)], dtype=np.int32)
  batch = {"tokens": tokens}
  if with_segments:
    batch["segment_ids"], batch["positions"] = segments_and_positions(tokens, split.eos_id)
  return batch


# ----------------------------------------------------------------------------------------------
# Evaluation windows.


@dataclasses.dataclass(frozen=True)
class EvalWindows:
  """Non-overlapping windows of exactly ``length`` tokens that never cross a document end."""

  tokens: np.ndarray
  document_index: np.ndarray
  offsets: np.ndarray
  num_documents: int

  @property
  def num_windows(self) -> int:
    """Number of windows."""
    return int(self.tokens.shape[0])

  @property
  def length(self) -> int:
    """Tokens per window."""
    return int(self.tokens.shape[1])

  @property
  def num_tokens(self) -> int:
    """Tokens in all windows (``num_windows * length``)."""
    return int(self.tokens.size)


def windows_per_document(split: TokenizedSplit, *, length: int) -> np.ndarray:
  """How many whole ``length``-token windows each document holds (EOS excluded)."""
  if length < 2:
    raise ValueError(f"length={length} must be >= 2")
  return (split.doc_ends - split.doc_offsets - 1) // length


def eval_windows(
  split: TokenizedSplit, *, length: int, max_windows: int | None = None
) -> EvalWindows:
  """Cut every document of at least ``length`` tokens (EOS excluded) into ``length``-windows."""
  per_doc = windows_per_document(split, length=length)
  document_index = np.repeat(np.arange(split.num_documents, dtype=np.int64), per_doc)
  first = np.cumsum(per_doc) - per_doc
  offsets = (np.arange(document_index.size, dtype=np.int64) - np.repeat(first, per_doc)) * length
  if max_windows is not None:
    document_index, offsets = document_index[:max_windows], offsets[:max_windows]
  starts = split.doc_offsets[document_index] + offsets
  tokens = np.asarray(split.tokens[starts[:, None] + np.arange(length)], dtype=np.int32)
  tokens = tokens.reshape(-1, length)
  return EvalWindows(tokens, document_index, offsets, int(np.unique(document_index).size))
