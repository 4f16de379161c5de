"""Token cache: every split tokenized once, memory-mapped, checked on every load.

A split is tokenized once into ``<cache_dir>/<dataset identity>-<split>-<tokenizer
fingerprint>-<dtype>/``: ``tokens.bin`` (raw ``uint16`` or ``uint32``: every document followed by
EOS), ``doc_offsets.npy`` (int64 start of each document) and ``meta.json``.  The directory is
written as ``.tmp-*`` and renamed, so a killed run never leaves a partial cache (only a ``.tmp-*``
directory that is never read and may be deleted).  ``meta.json`` records the sha256 of
``tokens.bin``; loading checks it, the file size, the id range and the EOS after every document,
so a damaged cache fails naming the file (ids outside the vocabulary would turn into NaN
embeddings: ``jnp.take`` fills out-of-range rows with NaN).  A source that describes itself (the
source tree) also gets ``manifest.json``: its corpus manifest with the tokens of this split.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hope_jax._durations import format_duration
from hope_jax.data.text_sources import DataFileError, open_documents

log = logging.getLogger(__name__)
CACHE_ENV = "HOPE_JAX_CACHE"
CACHE_FORMAT = 1
DTYPES: dict[str, int] = {"uint16": 2**16, "uint32": 2**32}
BATCH_CHARS = 4_000_000  # Documents are encoded in groups of about this many characters...
BATCH_DOCS = 1024  # ...or this many documents, whichever comes first.
PROGRESS_INTERVAL_S = 10.0  # seconds between progress lines while a split is tokenized


class TokenizerLike(Protocol):
  """What tokenization needs from a tokenizer (read-only attributes or properties)."""

  @property
  def vocab_size(self) -> int: ...

  @property
  def eos_id(self) -> int: ...

  @property
  def fingerprint(self) -> str: ...

  def encode_batch(self, texts: list[str], *, num_threads: int = -1) -> list[list[int]]: ...


@dataclasses.dataclass(frozen=True)
class TokenizedSplit:
  """A tokenized split: document ``i`` is ``tokens[doc_offsets[i]:doc_ends[i]]``, ending in EOS."""

  tokens: np.ndarray
  doc_offsets: np.ndarray
  eos_id: int
  documents_skipped_empty: int = 0
  path: Path | None = None

  @property
  def num_documents(self) -> int:
    """Number of (non-empty) documents."""
    return int(self.doc_offsets.shape[0])

  @property
  def num_tokens(self) -> int:
    """Number of tokens, EOS separators included."""
    return int(self.tokens.shape[0])

  @property
  def doc_ends(self) -> np.ndarray:
    """Exclusive end of each document (its EOS is at ``doc_ends - 1``)."""
    return np.append(self.doc_offsets[1:], self.num_tokens).astype(np.int64)

  @property
  def manifest(self) -> dict[str, Any] | None:
    """The corpus manifest written beside the cache (source_tree), or None."""
    path = self.path / "manifest.json" if self.path else None
    return json.loads(path.read_text()) if path and path.exists() else None

  def document(self, index: int) -> np.ndarray:
    """Tokens of document ``index`` without its EOS."""
    return np.asarray(self.tokens[self.doc_offsets[index] : self.doc_ends[index] - 1])


def default_cache_dir() -> Path:
  """``$HOPE_JAX_CACHE`` if set, else ``~/.cache/hope_jax``."""
  return Path(os.environ.get(CACHE_ENV) or "~/.cache/hope_jax").expanduser()


def token_dtype(vocab_size: int, dtype: str | None = None) -> np.dtype:
  """The storage dtype for ``vocab_size`` (uint16 up to 65,536 ids, else uint32)."""
  name = dtype or ("uint16" if vocab_size <= DTYPES["uint16"] else "uint32")
  if name not in DTYPES:
    raise ValueError(f"dtype={name!r} is not supported; expected one of {sorted(DTYPES)}")
  if vocab_size > DTYPES[name]:
    raise ValueError(
      f"vocab_size={vocab_size} does not fit dtype={name!r} (max {DTYPES[name]} ids)"
    )
  return np.dtype(name)


def _batches(texts: Iterable[str], *, max_chars: int, max_docs: int) -> Iterable[list[str]]:
  """Group texts into lists of at most ``max_docs`` documents or about ``max_chars`` characters."""
  batch: list[str] = []
  size = 0
  for text in texts:
    batch.append(text)
    size += len(text)
    if size >= max_chars or len(batch) >= max_docs:
      yield batch
      batch, size = [], 0
  if batch:
    yield batch


def _encode(
  batch: list[str],
  tokenizer: TokenizerLike,
  *,
  num_threads: int,
  segment: Callable[[str], list[str]] | None,
) -> list[list[int]]:
  """Encode a batch of texts; with ``segment``, encode every part in parallel and concatenate."""
  if segment is None:
    return tokenizer.encode_batch(batch, num_threads=num_threads)
  parts = [segment(text) for text in batch]
  encoded = iter(tokenizer.encode_batch([p for ps in parts for p in ps], num_threads=num_threads))
  return [list(itertools.chain.from_iterable(itertools.islice(encoded, len(ps)))) for ps in parts]


class _TokenizingProgress:
  """A line on stderr every PROGRESS_INTERVAL_S while a split is tokenized, with an ETA where
  the number of documents is known."""

  def __init__(self, docs: Any, *, enabled: bool):
    self.enabled = enabled
    self.description = docs.description
    self.total = docs.count() if enabled and getattr(docs, "count", None) else None
    self.start = self.last = time.perf_counter()

  def update(self, documents: int, tokens: int) -> None:
    """Reports the documents and tokens written so far, at most once per interval."""
    now = time.perf_counter()
    if not self.enabled or now - self.last < PROGRESS_INTERVAL_S:
      return
    self.last = now
    line = f"tokenizing {self.description}: {documents:,}"
    if self.total:
      left = (now - self.start) / documents * max(self.total - documents, 0)
      line += f"/{self.total:,} documents, {tokens:,} tokens; ETA {format_duration(left)}"
    else:
      line += f" documents, {tokens:,} tokens"
    print(line, file=sys.stderr, flush=True)


def _write_cache(
  docs: Any,
  tokenizer: TokenizerLike,
  tmp: Path,
  *,
  dtype: np.dtype,
  num_threads: int,
  progress: bool = False,
) -> dict[str, Any]:
  """Tokenize ``docs`` into ``tmp``; return the metadata."""
  report = _TokenizingProgress(docs, enabled=progress)
  offsets: list[int] = []
  total = 0
  eos = np.array([tokenizer.eos_id], dtype=dtype).tobytes()
  digest = hashlib.sha256()
  segment = getattr(docs, "segment", None)
  doc_key = getattr(docs, "doc_key", None)
  tokens_by_key: dict[str, int] = {}
  with open(tmp / "tokens.bin", "wb") as f:
    for batch in _batches(docs, max_chars=BATCH_CHARS, max_docs=BATCH_DOCS):
      encoded = _encode(batch, tokenizer, num_threads=num_threads, segment=segment)
      for text, ids in zip(batch, encoded):
        arr = np.asarray(ids, dtype=np.int64)
        if arr.size and (arr.min() < 0 or arr.max() >= DTYPES[dtype.name]):
          raise ValueError(f"token id out of range for dtype={dtype.name!r}")
        offsets.append(total)
        data = arr.astype(dtype).tobytes() + eos
        digest.update(data)
        f.write(data)
        total += arr.size + 1
        if doc_key is not None:
          key = doc_key(text)
          tokens_by_key[key] = tokens_by_key.get(key, 0) + int(arr.size)
      report.update(len(offsets), total)
  np.save(tmp / "doc_offsets.npy", np.asarray(offsets, dtype=np.int64))
  manifest = getattr(docs, "manifest", None)
  if manifest is not None:
    (tmp / "manifest.json").write_text(json.dumps(manifest(tokens_by_key), indent=1))
  return {"num_tokens": total, "num_documents": len(offsets), "sha256": digest.hexdigest()}


def _file_sha256(path: Path) -> str:
  """Hex sha256 of a file, read in 16 MiB blocks."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(functools.partial(f.read, 1 << 24), b""):
      digest.update(block)
  return digest.hexdigest()


def _check_cache(path: Path, meta: dict[str, Any], tokens: np.ndarray, offsets: np.ndarray) -> None:
  """Fail naming the file if the cache is not what ``meta.json`` says was written."""
  redo = f"delete {str(path)!r} to tokenize again"
  bin_path = path / "tokens.bin"
  if "sha256" in meta and _file_sha256(bin_path) != meta["sha256"]:
    raise DataFileError(bin_path, f"contents differ from the sha256 in meta.json; {redo}")
  vocab = int(meta["vocab_size"])
  if tokens.size and int(tokens.max()) >= vocab:
    index = int(np.argmax(tokens >= vocab))
    raise DataFileError(
      bin_path,
      f"token {index} has id {int(tokens[index])}, outside the "
      f"tokenizer's vocabulary of {vocab}; {redo}",
    )
  if offsets.shape != (meta["num_documents"],) or (
    offsets.size and (offsets[0] != 0 or np.any(np.diff(offsets) < 1))
  ):
    raise DataFileError(
      path / "doc_offsets.npy",
      f"does not hold {meta['num_documents']} increasing document starts from 0; {redo}",
    )
  ends = np.append(offsets[1:], tokens.size) - 1
  if offsets.size and not np.all(tokens[ends] == int(meta["eos_id"])):
    raise DataFileError(bin_path, f"a document does not end in EOS; {redo}")


def _load(path: Path) -> TokenizedSplit:
  """Open a finished cache directory as a memory-mapped :class:`TokenizedSplit` (checked)."""
  meta = json.loads((path / "meta.json").read_text())
  dtype = np.dtype(meta["dtype"])
  size = (path / "tokens.bin").stat().st_size
  if size != meta["num_tokens"] * dtype.itemsize:
    raise DataFileError(
      path / "tokens.bin",
      f"{size} bytes, but meta.json says "
      f"{meta['num_tokens']} tokens of {dtype.name}; delete {str(path)!r} "
      "to tokenize again",
    )
  tokens = np.memmap(path / "tokens.bin", dtype=dtype, mode="r", shape=(meta["num_tokens"],))
  offsets = np.load(path / "doc_offsets.npy")
  _check_cache(path, meta, tokens, offsets)
  return TokenizedSplit(
    tokens, offsets, int(meta["eos_id"]), int(meta["documents_skipped_empty"]), path
  )


def tokenize_split(
  spec: Mapping[str, Any] | Any,
  split: str,
  tokenizer: TokenizerLike,
  *,
  cache_dir: str | os.PathLike[str] | None = None,
  dtype: str | None = None,
  num_threads: int = -1,
  progress: bool = False,
) -> TokenizedSplit:
  """Tokenize ``split`` of ``spec`` once (cached by dataset, split, tokenizer); memory-map it.

  ``progress`` prints a line to stderr every 10 s while tokenizing.
  """
  docs = open_documents(spec, split)
  np_dtype = token_dtype(tokenizer.vocab_size, dtype)
  root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
  final = root / f"{docs.identity}-{tokenizer.fingerprint}-{np_dtype.name}"
  if (final / "meta.json").exists():
    return _load(final)
  root.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=root))
  try:
    start = time.perf_counter()
    meta = _write_cache(
      docs, tokenizer, tmp, dtype=np_dtype, num_threads=num_threads, progress=progress
    )
    meta.update(
      format=CACHE_FORMAT,
      dtype=np_dtype.name,
      eos_id=int(tokenizer.eos_id),
      vocab_size=int(tokenizer.vocab_size),
      tokenizer_fingerprint=tokenizer.fingerprint,
      identity=docs.identity,
      documents_skipped_empty=docs.stats.skipped_empty,
      seconds=round(time.perf_counter() - start, 3),
    )
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    log.info(
      "tokenized %s: %d documents, %d tokens in %.1fs",
      docs.description,
      meta["num_documents"],
      meta["num_tokens"],
      meta["seconds"],
    )
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a finished cache is readable like any file.
    try:
      os.rename(tmp, final)
    except OSError:
      if not (final / "meta.json").exists():  # Not a concurrent writer finishing first.
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return _load(final)
