"""Tests of the SentencePiece tokenizer wrapper, training and the shipped default model."""

from __future__ import annotations

import hashlib
import json
import lzma
import subprocess
import sys
from pathlib import Path

import pytest

from hope_jax.data.tokenizer import (
  BOS_ID,
  EOS_ID,
  PAD_ID,
  UNK_ID,
  default_model_path,
  load_tokenizer,
  train_tokenizer,
)

SAMPLE = "Hello  world,\n    def f(x):\n        return 12345\n\n\tÜber ☃ 日本 — done.\n"
WORDS = (
  "the quick brown fox jumps over the lazy dog while seven wizards quietly hex jolly boxers"
).split()


def _write_corpus(tmp_path: Path) -> list[str]:
  """A jsonl.xz file and a directory of .txt files of simple sentences."""
  lines = [
    " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(12)) + f" {i}." for i in range(300)
  ]
  with lzma.open(tmp_path / "a.jsonl.xz", "wt", encoding="utf-8") as f:
    for i in range(0, 200, 10):
      f.write(json.dumps({"id": f"a/{i}", "text": "\n".join(lines[i : i + 10])}) + "\n")
  (tmp_path / "txt").mkdir()
  for i in range(200, 300, 50):
    (tmp_path / "txt" / f"{i}.txt").write_text("\n\n".join(lines[i : i + 50]), encoding="utf-8")
  return [str(tmp_path / "a.jsonl.xz"), str(tmp_path / "txt")]


def test_default_tokenizer_properties() -> None:
  tok = load_tokenizer()
  assert tok.vocab_size == 16384
  assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.processor.unk_id()) == (
    PAD_ID,
    BOS_ID,
    EOS_ID,
    UNK_ID,
  )
  assert tok.fingerprint == hashlib.sha256(default_model_path().read_bytes()).hexdigest()[:16]
  assert default_model_path().stat().st_size < 1_000_000
  assert load_tokenizer("default") is tok  # memoized by path


def test_round_trip_is_lossless() -> None:
  tok = load_tokenizer()
  ids = tok.encode(SAMPLE)
  assert all(isinstance(i, int) for i in ids)
  assert tok.decode(ids) == SAMPLE
  assert UNK_ID not in ids  # byte fallback covers unseen characters


def test_digits_are_split() -> None:
  tok = load_tokenizer()
  pieces = [tok.id_to_piece(i) for i in tok.encode("in 2024 we saw 1234567 items")]
  digit_pieces = [p.lstrip("\u2581") for p in pieces if any(c.isdigit() for c in p)]
  assert digit_pieces and all(len(p) == 1 for p in digit_pieces)


def test_encode_batch_matches_encode() -> None:
  tok = load_tokenizer()
  texts = [SAMPLE, "short", "", "another line\nof text"]
  assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
  assert tok.encode_batch(texts, num_threads=1) == tok.encode_batch(texts, num_threads=2)


def test_load_missing_model_names_path(tmp_path: Path) -> None:
  missing = tmp_path / "nope.model"
  with pytest.raises(FileNotFoundError, match="nope.model"):
    load_tokenizer(missing)


def test_train_tokenizer_small(tmp_path: Path) -> None:
  inputs = _write_corpus(tmp_path)
  path = train_tokenizer(inputs, model_prefix=str(tmp_path / "out" / "tok"), vocab_size=320, seed=1)
  tok = load_tokenizer(path)
  assert path.is_file() and tok.vocab_size == 320
  assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.processor.unk_id()) == (0, 2, 3, 1)
  text = "the lazy wizards 42 ☃"
  assert tok.decode(tok.encode(text)) == text  # byte fallback for the unseen snowman
  assert len(tok.encode("the quick brown fox")) < len("the quick brown fox")  # merges were learned
  assert tok.fingerprint != load_tokenizer().fingerprint


def test_train_tokenizer_missing_input(tmp_path: Path) -> None:
  with pytest.raises(FileNotFoundError, match="does-not-exist"):
    train_tokenizer(
      [str(tmp_path / "does-not-exist")], model_prefix=str(tmp_path / "t"), vocab_size=300
    )


def test_cli_trains_a_model(tmp_path: Path) -> None:
  inputs = _write_corpus(tmp_path)
  prefix = tmp_path / "cli" / "tok"
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "hope_jax.data.tokenizer",
      "train",
      f"--input={','.join(inputs)}",
      f"--model_prefix={prefix}",
      "--vocab_size=300",
    ],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == 0, result.stderr
  assert "wrote" in result.stdout
  assert load_tokenizer(f"{prefix}.model").vocab_size == 300
