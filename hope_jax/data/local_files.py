"""Local text files: `.txt` documents and JSON lines (`.jsonl`, `.jsonl.xz`, `.jsonl.gz`).

A `.txt` file is one document; a JSON-lines record holds its text in a configurable field
(default ``"text"``).  Empty documents are skipped and counted in a :class:`ReadStats`.  A file
that cannot be read as such (0 bytes, a truncated or corrupt xz/gzip stream, bytes that are not
UTF-8, a line that is not a JSON object with the text field) raises :class:`DataFileError`
naming the file and, where it applies, the line.

Splits of a local source come either from the files themselves (a directory with
``train.jsonl.xz`` / ``validation.jsonl.xz`` or any supported suffix) or, for a single
file or a directory without split files, from a deterministic hash split of document
ids: a document is in ``validation`` iff ``int(sha1(id).hexdigest(), 16) % 100 <
validation_percent``, otherwise in ``train``.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import lzma
import os
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

SUFFIXES: tuple[str, ...] = (".txt", ".jsonl", ".jsonl.xz", ".jsonl.gz")
SPLITS: tuple[str, ...] = ("train", "validation")
FILE_SPLITS: tuple[str, ...] = ("train", "validation", "test")
DEFAULT_VALIDATION_PERCENT = 5
# What a damaged compressed stream raises while it is read.
_STREAM_ERRORS = (lzma.LZMAError, EOFError, gzip.BadGzipFile, zlib.error)


class DataFileError(ValueError):
  """A data file that cannot be read as text documents; names the file and, if known, the line."""

  def __init__(self, path: str | os.PathLike[str], message: str, *, line: int | None = None):
    """Record the file, the line (or None) and what is wrong."""
    self.path = str(path)
    self.line = line
    where = f" line {line}" if line is not None else ""
    super().__init__(f"data file {self.path!r}{where}: {message}")


@dataclasses.dataclass
class ReadStats:
  """Counts of documents read and empty documents skipped."""

  documents: int = 0
  skipped_empty: int = 0


@dataclasses.dataclass(frozen=True)
class Document:
  """One document: a stable id and its text."""

  id: str
  text: str


def _suffix(path: Path) -> str | None:
  """Return the supported suffix of ``path`` or None."""
  name = path.name
  for suffix in sorted(SUFFIXES, key=len, reverse=True):
    if name.endswith(suffix):
      return suffix
  return None


def list_files(path: str | os.PathLike[str]) -> list[Path]:
  """List the supported text files at ``path`` (a file or a directory, searched recursively)."""
  p = Path(path).expanduser()
  if not p.exists():
    raise FileNotFoundError(f"local corpus path does not exist: {str(p)!r}")
  if p.is_file():
    if _suffix(p) is None:
      raise ValueError(f"unsupported file type {str(p)!r}: expected one of {SUFFIXES}")
    return [p]
  files = sorted(f for f in p.rglob("*") if f.is_file() and _suffix(f) is not None)
  if not files:
    raise ValueError(f"empty corpus: no {'/'.join(SUFFIXES)} files under {str(p)!r}")
  return files


def decode_utf8(path: Path, data: bytes, *, first_line: int = 1) -> str:
  """Decode ``data`` (which starts at line ``first_line`` of ``path``) as strict UTF-8."""
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    line = first_line + data.count(b"\n", 0, e.start)
    bad = data[e.start : e.start + 1].hex()
    raise DataFileError(
      path, f"not UTF-8 text (byte 0x{bad} at offset {e.start})", line=line
    ) from None


def _open_binary(path: Path) -> io.BufferedIOBase:
  """Open a possibly compressed file for reading its decompressed bytes."""
  if path.name.endswith(".xz"):
    return lzma.open(path, "rb")
  if path.name.endswith(".gz"):
    return gzip.open(path, "rb")
  return open(path, "rb")


def _check_not_empty(path: Path) -> None:
  """A 0-byte data file is a failed write or copy, never a corpus."""
  if path.stat().st_size == 0:
    raise DataFileError(path, "the file is empty (0 bytes)")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
  """Yield ``(line number, text)`` of a possibly compressed UTF-8 file, naming it on any damage."""
  _check_not_empty(path)
  kind = "xz" if path.name.endswith(".xz") else "gzip" if path.name.endswith(".gz") else ""
  with _open_binary(path) as f:
    lineno = 0
    while True:
      try:
        raw = f.readline()
      except _STREAM_ERRORS as e:
        raise DataFileError(
          path,
          f"truncated or corrupt {kind or 'compressed'} stream after line "
          f"{lineno} ({type(e).__name__}: {e})",
        ) from None
      if not raw:
        return
      lineno += 1
      yield lineno, decode_utf8(path, raw, first_line=lineno)


def iter_file_documents(
  path: Path,
  *,
  text_field: str = "text",
  id_field: str = "id",
  stats: ReadStats | None = None,
  root: Path | None = None,
  skip_empty: bool = True,
) -> Iterator[Document]:
  """Yield the documents of one file, skipping and counting empty ones if ``skip_empty``."""
  stats = stats if stats is not None else ReadStats()
  if _suffix(path) == ".txt":
    _check_not_empty(path)
    doc_id = str(path.relative_to(root)) if root else path.name
    text = decode_utf8(path, path.read_bytes())
    if skip_empty and not text.strip():
      stats.skipped_empty += 1
      return
    stats.documents += 1
    yield Document(doc_id, text)
    return
  for lineno, line in iter_lines(path):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise DataFileError(path, f"corrupt JSON: {e.msg} (column {e.colno})", line=lineno) from None
    if not isinstance(record, dict) or text_field not in record:
      raise DataFileError(path, f"the record has no text field {text_field!r}", line=lineno)
    text = record[text_field]
    if not isinstance(text, str):
      raise DataFileError(path, f"text field {text_field!r} is not a string", line=lineno)
    if skip_empty and not text.strip():
      stats.skipped_empty += 1
      continue
    stats.documents += 1
    yield Document(str(record.get(id_field, f"{path.name}:{lineno}")), text)


def iter_documents(
  path: str | os.PathLike[str],
  *,
  text_field: str = "text",
  stats: ReadStats | None = None,
) -> Iterator[Document]:
  """Yield all non-empty documents under ``path``; raise if there are none."""
  stats = stats if stats is not None else ReadStats()
  p = Path(path).expanduser()
  root = p if p.is_dir() else None
  before = stats.documents
  for file in list_files(p):
    yield from iter_file_documents(file, text_field=text_field, stats=stats, root=root)
  if stats.documents == before:
    raise ValueError(f"empty corpus: no non-empty documents under {str(p)!r}")


def iter_texts(
  paths: Sequence[str | os.PathLike[str]], *, text_field: str = "text"
) -> Iterator[str]:
  """Yield the text of every document under each of ``paths``."""
  for path in paths:
    for doc in iter_documents(path, text_field=text_field):
      yield doc.text


# ----------------------------------------------------------------------------------------------
# Splits of local sources.


def split_files(path: str | os.PathLike[str]) -> dict[str, Path]:
  """Map split names to the ``<split>.<suffix>`` files or ``<split>/`` folders in ``path``."""
  p = Path(path).expanduser()
  found: dict[str, Path] = {}
  if not p.is_dir():
    return found
  for split in FILE_SPLITS:
    candidates = [p / f"{split}{suffix}" for suffix in SUFFIXES] + [p / split]
    present = [c for c in candidates if c.exists()]
    if len(present) > 1:
      raise ValueError(f"split {split!r} of {str(p)!r} is ambiguous: {[str(c) for c in present]}")
    if present:
      found[split] = present[0]
  return found


def in_validation(doc_id: str, validation_percent: float) -> bool:
  """Hash split: a document is in ``validation`` iff sha1(id) mod 100 < validation_percent."""
  return int(hashlib.sha1(doc_id.encode("utf-8")).hexdigest(), 16) % 100 < validation_percent


def check_percent(validation_percent: float) -> None:
  """Reject validation percentages outside [0, 100]."""
  if not 0 <= validation_percent <= 100:
    raise ValueError(f"validation_percent={validation_percent!r} must be in [0, 100]")


def local_split_names(path: str | os.PathLike[str]) -> tuple[str, ...]:
  """The splits a local source offers: its split files, else train/validation by hash."""
  return tuple(split_files(path)) or SPLITS


def iter_local_split(
  path: str | os.PathLike[str],
  split: str,
  *,
  text_field: str = "text",
  validation_percent: float = DEFAULT_VALIDATION_PERCENT,
  stats: ReadStats | None = None,
  skip_empty: bool = True,
) -> Iterator[Document]:
  """Yield the documents of one split of a local source (split files, or the id hash split)."""
  check_percent(validation_percent)
  p = Path(path).expanduser()
  files = split_files(p)
  names = tuple(files) or SPLITS
  if split not in names:
    raise ValueError(f"split={split!r} not found in local source {str(p)!r}; available: {names}")
  if files:
    target = files[split]
    root = target if target.is_dir() else None
    for file in list_files(target):
      yield from iter_file_documents(
        file, text_field=text_field, stats=stats, root=root, skip_empty=skip_empty
      )
    return
  root = p if p.is_dir() else None
  want_validation = split == "validation"
  for file in list_files(p):
    for doc in iter_file_documents(file, text_field=text_field, root=root, skip_empty=False):
      if in_validation(doc.id, validation_percent) != want_validation:
        continue
      if skip_empty and not doc.text.strip():
        if stats is not None:
          stats.skipped_empty += 1
        continue
      if stats is not None:
        stats.documents += 1
      yield doc


def local_fingerprint(
  path: str | os.PathLike[str], *, text_field: str, validation_percent: float
) -> str:
  """Hash of the absolute path, the options and every file's name, size and mtime."""
  p = Path(path).expanduser().resolve()
  h = hashlib.sha1(f"{p}\0{text_field}\0{validation_percent}".encode())
  for file in list_files(p):
    st = file.stat()
    h.update(f"\0{file}\0{st.st_size}\0{st.st_mtime_ns}".encode())
  return h.hexdigest()[:16]
