"""Damaged data files fail early with a DataFileError naming the file (and the line)."""

from __future__ import annotations

import gzip
import json
import lzma
import re
from pathlib import Path

import numpy as np
import pytest

from hope_jax.data.batches import tokenize_split
from hope_jax.data.text_sources import DataFileError, iter_documents, open_documents
from hope_jax.data.tokenizer import load_tokenizer

RECORDS = [{"id": f"doc{i}", "text": f"document number {i} " * 50} for i in range(40)]


def _payload() -> bytes:
  """JSON lines of the test records."""
  return "".join(json.dumps(r) + "\n" for r in RECORDS).encode()


def _random_bytes(n: int = 4000) -> bytes:
  """Fixed random bytes (the same on every run)."""
  return np.random.default_rng(0).integers(0, 256, size=n, dtype=np.uint8).tobytes()


def _read(path: Path) -> list[str]:
  """Read every document under ``path``."""
  return [d.text for d in iter_documents(path)]


@pytest.mark.parametrize("suffix", [".jsonl.xz", ".jsonl.gz"])
def test_truncated_compressed_file_is_named(tmp_path: Path, suffix: str) -> None:
  data = lzma.compress(_payload()) if suffix.endswith("xz") else gzip.compress(_payload())
  path = tmp_path / f"train{suffix}"
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(DataFileError, match=r"train\.jsonl\.(xz|gz)'.*truncated or corrupt") as e:
    _read(path)
  assert e.value.path == str(path)


@pytest.mark.parametrize("suffix", [".jsonl.xz", ".jsonl.gz"])
def test_corrupt_compressed_file_is_named(tmp_path: Path, suffix: str) -> None:
  data = bytearray(
    lzma.compress(_payload()) if suffix.endswith("xz") else gzip.compress(_payload())
  )
  middle = len(data) // 2
  data[middle : middle + 64] = bytes(64)
  path = tmp_path / f"corrupt{suffix}"
  path.write_bytes(bytes(data))
  with pytest.raises(DataFileError, match=r"corrupt\.jsonl\.(xz|gz)'.*truncated or corrupt"):
    _read(path)


@pytest.mark.parametrize("name", ["train.jsonl.xz", "train.jsonl.gz", "train.jsonl", "doc.txt"])
def test_zero_byte_file_is_named(tmp_path: Path, name: str) -> None:
  path = tmp_path / name
  path.write_bytes(b"")
  with pytest.raises(DataFileError, match=re.escape(f"{name}': the file is empty (0 bytes)")):
    _read(path)


def test_zero_byte_train_file_through_the_local_source(tmp_path: Path) -> None:
  corpus = tmp_path / "corpus"
  corpus.mkdir()
  (corpus / "train.jsonl.xz").write_bytes(b"")
  (corpus / "validation.jsonl").write_bytes(_payload())
  spec = {"source": "local", "path": str(corpus), "data_dir": str(tmp_path / "tfds")}
  with pytest.raises(DataFileError, match=r"train\.jsonl\.xz': the file is empty"):
    list(open_documents(spec, "train"))


def test_non_utf8_text_file_names_file_and_line(tmp_path: Path) -> None:
  path = tmp_path / "latin1.txt"
  path.write_bytes("first line\nsecond line\nna\xefve third\n".encode("latin-1"))
  with pytest.raises(DataFileError, match=r"latin1\.txt' line 3: not UTF-8 text \(byte 0xef"):
    _read(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.xz"])
def test_non_utf8_json_line_names_file_and_line(tmp_path: Path, suffix: str) -> None:
  lines = _payload().splitlines(keepends=True)
  lines[6] = b'{"text": "caf\xe9"}\n'
  data = b"".join(lines)
  path = tmp_path / f"records{suffix}"
  path.write_bytes(lzma.compress(data) if suffix.endswith("xz") else data)
  with pytest.raises(DataFileError, match=r"records\.jsonl(\.xz)?' line 7: not UTF-8") as e:
    _read(path)
  assert e.value.line == 7


def test_bad_json_line_names_file_and_line(tmp_path: Path) -> None:
  lines = _payload().splitlines(keepends=True)
  lines[11] = b'{"text": "unterminated\n'
  path = tmp_path / "broken.jsonl.gz"
  path.write_bytes(gzip.compress(b"".join(lines)))
  with pytest.raises(DataFileError, match=r"broken\.jsonl\.gz' line 12: corrupt JSON"):
    _read(path)


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".jsonl.xz", ".jsonl.gz"])
def test_random_bytes_inside_a_data_file_fail(tmp_path: Path, suffix: str) -> None:
  payload = _payload() if suffix != ".txt" else b"plain text\n" * 500
  payload = payload[:3000] + _random_bytes() + payload[3000:]
  compress = {".jsonl.xz": lzma.compress, ".jsonl.gz": gzip.compress}.get(suffix, bytes)
  path = tmp_path / f"noisy{suffix}"
  path.write_bytes(compress(payload))
  with pytest.raises(DataFileError, match=r"noisy\.(txt|jsonl)"):
    _read(path)


def _cache(tmp_path: Path) -> Path:
  """Tokenize a small local corpus; return its cache directory."""
  corpus = tmp_path / "corpus"
  if not corpus.exists():  # Written once: its mtime is part of the cache's name.
    corpus.mkdir()
    (corpus / "train.jsonl").write_bytes(_payload())
  spec = {"source": "local", "path": str(corpus), "data_dir": str(tmp_path / "tfds")}
  split = tokenize_split(spec, "train", load_tokenizer(), cache_dir=tmp_path / "cache")
  assert split.path is not None and split.num_documents == len(RECORDS)
  return split.path


def test_random_bytes_inside_the_token_cache_fail_before_training(tmp_path: Path) -> None:
  # 4,000 random bytes written over tokens.bin used to load silently: as uint16 most ids exceed
  # the 16,384-piece vocabulary, the embedding lookup (jnp.take) returns NaN rows, loss NaN.
  path = _cache(tmp_path) / "tokens.bin"
  data = bytearray(path.read_bytes())
  data[100 : 100 + 4000] = _random_bytes()
  path.write_bytes(bytes(data))
  with pytest.raises(DataFileError, match=r"tokens\.bin'.*sha256.*delete"):
    _cache(tmp_path)  # Loads the cache written before.


def test_out_of_vocabulary_ids_in_a_cache_without_checksum_fail(tmp_path: Path) -> None:
  cache = _cache(tmp_path)
  meta = json.loads((cache / "meta.json").read_text())
  del meta["sha256"]  # A cache written before checksums were recorded.
  (cache / "meta.json").write_text(json.dumps(meta))
  tokens = np.fromfile(cache / "tokens.bin", dtype=meta["dtype"])
  tokens[17] = 60_000
  tokens.tofile(cache / "tokens.bin")
  with pytest.raises(DataFileError, match=r"token 17 has id 60000, outside .* 16384"):
    _cache(tmp_path)  # Loads the cache written before.


def test_truncated_token_cache_fails(tmp_path: Path) -> None:
  path = _cache(tmp_path) / "tokens.bin"
  path.write_bytes(path.read_bytes()[:-6])
  with pytest.raises(DataFileError, match=r"tokens\.bin'.*bytes, but meta\.json says"):
    _cache(tmp_path)  # Loads the cache written before.
