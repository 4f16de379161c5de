"""SentencePiece tokenizer: training from local corpora, loading, and the shipped default model.

The shipped model (``hope_jax/assets/tokenizer.model``) is a 16,384-piece BPE model with
byte fallback, digits split, identity normalization (``decode(encode(s)) == s``) and fixed
special ids pad=0, unk=1, bos=2, eos=3.  See ``hope_jax/assets/README.md`` for the command.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.resources
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import sentencepiece as spm

from hope_jax.data.text_sources import iter_texts, list_files

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
DEFAULT_NAME = "default"


def _paragraphs(text: str, *, max_chars: int) -> Iterator[str]:
  """Split ``text`` into blank-line-terminated paragraphs of whole lines, cut near ``max_chars``."""
  buf: list[str] = []
  size = 0
  for line in text.splitlines(keepends=True):
    if buf and size + len(line) > max_chars:
      yield "".join(buf)
      buf, size = [], 0
    buf.append(line)
    size += len(line)
    if not line.strip():
      yield "".join(buf)
      buf, size = [], 0
  if buf:
    yield "".join(buf)


def _sentences(
  input_files: Sequence[str | os.PathLike[str]], *, text_field: str, max_chars: int = 4000
) -> Iterator[str]:
  """Yield training "sentences": paragraphs of every document, newlines kept so they get pieces."""
  for text in iter_texts(input_files, text_field=text_field):
    for paragraph in _paragraphs(text, max_chars=max_chars):
      if paragraph.strip():
        yield paragraph


def train_tokenizer(
  input_files: Sequence[str | os.PathLike[str]],
  *,
  model_prefix: str,
  vocab_size: int = 16384,
  model_type: str = "bpe",
  byte_fallback: bool = True,
  input_sentence_size: int = 2_000_000,
  seed: int = 0,
  num_threads: int = 2,
  character_coverage: float = 0.9995,
  text_field: str = "text",
) -> Path:
  """Train a SentencePiece model on the paragraphs of ``input_files``; return its path."""
  if byte_fallback and vocab_size <= 260:
    raise ValueError(f"vocab_size={vocab_size} is too small for byte_fallback (256 bytes + 4 ids)")
  for path in input_files:
    list_files(path)  # Fail early, naming a missing or empty input.
  Path(model_prefix).expanduser().parent.mkdir(parents=True, exist_ok=True)
  spm.set_random_generator_seed(seed)
  spm.SentencePieceTrainer.train(
    sentence_iterator=_sentences(input_files, text_field=text_field),
    model_prefix=str(Path(model_prefix).expanduser()),
    vocab_size=vocab_size,
    model_type=model_type,
    byte_fallback=byte_fallback,
    input_sentence_size=input_sentence_size,
    shuffle_input_sentence=True,
    character_coverage=character_coverage,
    split_digits=True,
    allow_whitespace_only_pieces=True,
    remove_extra_whitespaces=False,
    add_dummy_prefix=False,
    normalization_rule_name="identity",
    pad_id=PAD_ID,
    unk_id=UNK_ID,
    bos_id=BOS_ID,
    eos_id=EOS_ID,
    num_threads=num_threads,
    max_sentence_length=16384,
    minloglevel=2,
  )
  return Path(f"{Path(model_prefix).expanduser()}.model")


class Tokenizer:
  """A thin wrapper around ``SentencePieceProcessor`` with a content fingerprint."""

  def __init__(self, model_bytes: bytes, *, name: str = "") -> None:
    """Load a tokenizer from serialized SentencePiece model bytes."""
    self._sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    self.name = name
    self.fingerprint = hashlib.sha256(model_bytes).hexdigest()[:16]

  @property
  def vocab_size(self) -> int:
    """Number of pieces in the vocabulary."""
    return self._sp.get_piece_size()

  @property
  def eos_id(self) -> int:
    """End-of-sequence id."""
    return self._sp.eos_id()

  @property
  def bos_id(self) -> int:
    """Beginning-of-sequence id."""
    return self._sp.bos_id()

  @property
  def pad_id(self) -> int:
    """Padding id."""
    return self._sp.pad_id()

  @property
  def processor(self) -> spm.SentencePieceProcessor:
    """The underlying SentencePiece processor."""
    return self._sp

  def encode(self, text: str) -> list[int]:
    """Encode one string to ids (no BOS/EOS added)."""
    return self._sp.encode(text)

  def encode_batch(self, texts: Sequence[str], *, num_threads: int = -1) -> list[list[int]]:
    """Encode a list of strings, using ``num_threads`` threads (-1: all cores)."""
    return self._sp.encode(list(texts), num_threads=num_threads)

  def decode(self, ids: Sequence[int]) -> str:
    """Decode ids to a string."""
    return self._sp.decode([int(i) for i in ids])

  def id_to_piece(self, token_id: int) -> str:
    """Return the piece string of one id."""
    return self._sp.id_to_piece(int(token_id))

  def __repr__(self) -> str:
    return (
      f"Tokenizer(name={self.name!r}, vocab_size={self.vocab_size}, fingerprint={self.fingerprint})"
    )


def default_model_path() -> Path:
  """Path of the shipped default model inside the installed package."""
  resource = importlib.resources.files("hope_jax") / "assets" / "tokenizer.model"
  return Path(str(resource))


@functools.lru_cache(maxsize=8)
def _load_cached(path: str) -> Tokenizer:
  """Load and memoize a tokenizer by resolved path."""
  return Tokenizer(Path(path).read_bytes(), name=path)


def load_tokenizer(path_or_name: str | os.PathLike[str] = DEFAULT_NAME) -> Tokenizer:
  """Load ``"default"`` (the shipped model) or a SentencePiece ``.model`` file."""
  if str(path_or_name) == DEFAULT_NAME:
    path = default_model_path()
  else:
    path = Path(path_or_name).expanduser()
  if not path.is_file():
    raise FileNotFoundError(
      f"tokenizer model not found: path_or_name={str(path_or_name)!r} ({path})"
    )
  return _load_cached(str(path.resolve()))


def _main(argv: Sequence[str] | None = None) -> int:
  """Command line: ``python -m hope_jax.data.tokenizer train --input=... --model_prefix=...``."""
  parser = argparse.ArgumentParser(prog="python -m hope_jax.data.tokenizer")
  sub = parser.add_subparsers(dest="command", required=True)
  train = sub.add_parser("train", help="train a SentencePiece model")
  train.add_argument("--input", required=True, help="comma-separated files or directories")
  train.add_argument("--model_prefix", required=True)
  train.add_argument("--vocab_size", type=int, default=16384)
  train.add_argument("--model_type", default="bpe", choices=["bpe", "unigram", "char", "word"])
  train.add_argument("--no_byte_fallback", action="store_true")
  train.add_argument("--input_sentence_size", type=int, default=2_000_000)
  train.add_argument("--seed", type=int, default=0)
  train.add_argument("--num_threads", type=int, default=2)
  train.add_argument("--text_field", default="text")
  args = parser.parse_args(argv)
  start = time.perf_counter()
  path = train_tokenizer(
    [p for p in args.input.split(",") if p],
    model_prefix=args.model_prefix,
    vocab_size=args.vocab_size,
    model_type=args.model_type,
    byte_fallback=not args.no_byte_fallback,
    input_sentence_size=args.input_sentence_size,
    seed=args.seed,
    num_threads=args.num_threads,
    text_field=args.text_field,
  )
  tok = load_tokenizer(path)
  print(
    f"wrote {path} ({path.stat().st_size} bytes, {tok!r}) in {time.perf_counter() - start:.1f}s"
  )
  return 0


if __name__ == "__main__":
  sys.exit(_main())
