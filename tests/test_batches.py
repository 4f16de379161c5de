"""Tests of the token cache, stateless training batches and evaluation windows."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hope_jax.data import batches
from hope_jax.data.batches import (
  TokenizedSplit,
  epoch_permutation,
  eval_windows,
  segments_and_positions,
  token_dtype,
  tokenize_split,
  train_batch,
)
from hope_jax.data.text_sources import open_documents
from hope_jax.data.tokenizer import Tokenizer, load_tokenizer

EOS = 3


class CountingTokenizer:
  """The real tokenizer, counting ``encode_batch`` calls and optionally overstating vocab_size."""

  def __init__(self, inner: Tokenizer, *, vocab_size: int | None = None) -> None:
    self.inner, self.calls = inner, 0
    self.vocab_size = vocab_size or inner.vocab_size
    self.eos_id, self.fingerprint = inner.eos_id, inner.fingerprint

  def encode_batch(self, texts: list[str], *, num_threads: int = -1) -> list[list[int]]:
    self.calls += 1
    return self.inner.encode_batch(texts, num_threads=num_threads)


def synthetic_split(doc_lengths: list[int]) -> TokenizedSplit:
  """Documents of the given lengths with distinct non-EOS token values, each followed by EOS."""
  pieces, offsets, start, value = [], [], 0, 10
  for n in doc_lengths:
    offsets.append(start)
    pieces.append(np.arange(value, value + n))
    pieces.append(np.array([EOS]))
    value += n
    start += n + 1
  return TokenizedSplit(np.concatenate(pieces).astype(np.int32), np.array(offsets, np.int64), EOS)


def test_tokenize_split_contents(tmp_path: Path) -> None:
  tok = load_tokenizer()
  split = tokenize_split({"source": "embedded"}, "validation", tok, cache_dir=tmp_path)
  texts = list(open_documents({"source": "embedded"}, "validation"))
  assert split.tokens.dtype == np.uint16 and isinstance(split.tokens, np.memmap)
  assert split.doc_offsets.dtype == np.int64 and split.num_documents == len(texts)
  assert split.num_tokens == sum(len(tok.encode(t)) + 1 for t in texts)
  for i in (0, 5, len(texts) - 1):
    assert split.document(i).tolist() == tok.encode(texts[i])
    assert split.tokens[split.doc_ends[i] - 1] == tok.eos_id
  assert split.eos_id == tok.eos_id and split.documents_skipped_empty == 0


def test_cache_is_reused(tmp_path: Path) -> None:
  tok = CountingTokenizer(load_tokenizer())
  first = tokenize_split({"source": "embedded"}, "validation", tok, cache_dir=tmp_path)
  assert tok.calls >= 1
  calls, mtime = tok.calls, (first.path / "tokens.bin").stat().st_mtime_ns
  second = tokenize_split({"source": "embedded"}, "validation", tok, cache_dir=tmp_path)
  assert tok.calls == calls and (second.path / "tokens.bin").stat().st_mtime_ns == mtime
  assert np.array_equal(first.tokens, second.tokens)
  assert [p.name for p in tmp_path.iterdir()] == [first.path.name]


def test_cache_env_var_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
  monkeypatch.setenv("HOPE_JAX_CACHE", str(tmp_path / "env-cache"))
  tok = load_tokenizer()
  split = tokenize_split({"source": "embedded"}, "validation", tok)
  assert split.path.parent == tmp_path / "env-cache"
  assert tok.fingerprint in split.path.name and "validation" in split.path.name


KILL_SCRIPT = """
import os, signal, sys
from hope_jax.data import batches
from hope_jax.data.tokenizer import load_tokenizer
tok = load_tokenizer()
class Killer:
  vocab_size, eos_id, fingerprint = tok.vocab_size, tok.eos_id, tok.fingerprint
  calls = 0
  def encode_batch(self, texts, num_threads=-1):
    self.calls += 1
    if self.calls == 2:
      os.kill(os.getpid(), signal.SIGKILL)
    return tok.encode_batch(texts, num_threads=num_threads)
from hope_jax.data import token_cache
token_cache.BATCH_DOCS = 4
batches.tokenize_split({"source": "embedded"}, "validation", Killer(), cache_dir=sys.argv[1])
"""


def test_killed_run_leaves_no_partial_cache(tmp_path: Path) -> None:
  result = subprocess.run(
    [sys.executable, "-c", KILL_SCRIPT, str(tmp_path)], capture_output=True, timeout=120
  )
  assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
  leftovers = list(tmp_path.iterdir())
  assert leftovers and all(
    p.name.startswith(".tmp-") for p in leftovers
  )  # only the abandoned temp dir
  tok = CountingTokenizer(load_tokenizer())
  split = tokenize_split({"source": "embedded"}, "validation", tok, cache_dir=tmp_path)
  assert tok.calls >= 1 and split.num_documents == len(
    list(open_documents({"source": "embedded"}, "validation"))
  )


def test_token_dtype_limits(tmp_path: Path) -> None:
  assert token_dtype(16384) == np.uint16 and token_dtype(65536) == np.uint16
  assert token_dtype(65537) == np.uint32
  with pytest.raises(ValueError, match="vocab_size=70000.*dtype='uint16'"):
    token_dtype(70000, "uint16")
  with pytest.raises(ValueError, match="vocab_size=70000.*uint16"):
    tokenize_split(
      {"source": "embedded"},
      "validation",
      CountingTokenizer(load_tokenizer(), vocab_size=70000),
      cache_dir=tmp_path,
      dtype="uint16",
    )
  big = tokenize_split(
    {"source": "embedded"},
    "validation",
    CountingTokenizer(load_tokenizer(), vocab_size=70000),
    cache_dir=tmp_path,
  )
  assert big.tokens.dtype == np.uint32


def test_train_batch_shapes_and_chunks() -> None:
  split = synthetic_split([30, 7, 50, 12, 40])  # 144 tokens -> 16 chunks of 9
  batch = train_batch(split, seed=0, step=0, batch_size=4, seq_len=8)
  assert batch["tokens"].shape == (4, 9) and batch["tokens"].dtype == np.int32
  chunks = {tuple(c) for c in np.asarray(split.tokens[: 16 * 9]).reshape(16, 9)}
  assert all(tuple(row) in chunks for row in batch["tokens"])
  assert len({tuple(row) for row in batch["tokens"]}) == 4


def test_every_chunk_once_per_epoch() -> None:
  split = synthetic_split([30, 7, 50, 12, 40])
  count = split.num_tokens // 9
  chunks = np.asarray(split.tokens[: count * 9]).reshape(count, 9)
  rows = np.concatenate(
    [train_batch(split, seed=3, step=s, batch_size=4, seq_len=8)["tokens"] for s in range(8)]
  )
  epoch0, epoch1 = rows[:count], rows[count:]
  for epoch in (epoch0, epoch1):
    assert sorted(map(tuple, epoch)) == sorted(map(tuple, chunks))
  assert not np.array_equal(epoch0, epoch1)  # a new permutation each epoch


def test_batch_is_a_pure_function_of_seed_and_step() -> None:
  split = synthetic_split([100, 3, 77, 250, 31])
  kwargs = dict(
    seed=11, batch_size=6, seq_len=16
  )  # 6 does not divide the 27 chunks: epochs straddle batches
  original = [train_batch(split, step=s, **kwargs)["tokens"] for s in range(12)]
  epoch_permutation.cache_clear()
  resumed = [train_batch(split, step=s, **kwargs)["tokens"] for s in range(7, 12)]
  for a, b in zip(original[7:], resumed):
    assert np.array_equal(a, b)
  assert np.array_equal(train_batch(split, step=2, **kwargs)["tokens"], original[2])
  other_seed = [
    train_batch(split, step=s, seed=12, batch_size=6, seq_len=16)["tokens"] for s in range(4)
  ]
  assert not all(np.array_equal(a, b) for a, b in zip(original, other_seed))


def test_permutation_is_computed_once_per_epoch() -> None:
  split = synthetic_split([100, 3, 77, 250, 31])  # 27 chunks of 17
  epoch_permutation.cache_clear()
  for step in range(6):  # rows 0..23: all in epoch 0
    train_batch(split, seed=5, step=step, batch_size=4, seq_len=16)
  assert epoch_permutation.cache_info().misses == 1
  train_batch(split, seed=5, step=6, batch_size=4, seq_len=16)  # rows 24..27 straddle epochs 0, 1
  assert epoch_permutation.cache_info().misses == 2


def test_skipped_empty_documents_are_recorded(tmp_path: Path) -> None:
  corpus = tmp_path / "corpus"
  corpus.mkdir()
  (corpus / "train.jsonl").write_text(
    "\n".join(json.dumps({"text": t}) for t in ["first doc", "", "  ", "second doc"]) + "\n"
  )
  spec = {"source": "local", "path": str(corpus), "data_dir": str(tmp_path / "tfds")}
  tok = load_tokenizer()
  split = tokenize_split(spec, "train", tok, cache_dir=tmp_path / "cache")
  assert split.documents_skipped_empty == 2 and split.num_documents == 2
  assert split.document(1).tolist() == tok.encode("second doc")
  assert (
    tokenize_split(spec, "train", tok, cache_dir=tmp_path / "cache").documents_skipped_empty == 2
  )


def test_process_slices_concatenate_to_global_batch() -> None:
  split = synthetic_split([100, 3, 77, 250, 31])
  for step in (0, 5):
    full = train_batch(split, seed=1, step=step, batch_size=8, seq_len=10, with_segments=True)
    parts = [
      train_batch(
        split,
        seed=1,
        step=step,
        batch_size=8,
        seq_len=10,
        process_index=p,
        process_count=4,
        with_segments=True,
      )
      for p in range(4)
    ]
    for key in ("tokens", "segment_ids", "positions"):
      assert np.array_equal(np.concatenate([p[key] for p in parts]), full[key])
  with pytest.raises(ValueError, match="batch_size=6.*process_count=4"):
    train_batch(split, seed=1, step=0, batch_size=6, seq_len=10, process_count=4)
  with pytest.raises(ValueError, match="process_index=4"):
    train_batch(split, seed=1, step=0, batch_size=8, seq_len=10, process_index=4, process_count=4)
  with pytest.raises(ValueError, match="seq_len=1000"):
    train_batch(split, seed=1, step=0, batch_size=8, seq_len=1000)


def test_segments_and_positions_example() -> None:
  tokens = np.array([[5, 6, EOS, 7, 8, 9, EOS, EOS, 4]])
  seg, pos = segments_and_positions(tokens, EOS)
  assert seg.tolist() == [[1, 1, 1, 2, 2, 2, 2, 3, 4]]
  assert pos.tolist() == [[0, 1, 2, 0, 1, 2, 3, 0, 0]]


@settings(max_examples=50, deadline=None)
@given(
  st.lists(
    st.lists(st.sampled_from([EOS, 4, 5, 6]), min_size=12, max_size=12), min_size=1, max_size=4
  )
)
def test_positions_restart_after_each_eos(rows: list[list[int]]) -> None:
  tokens = np.array(rows)
  seg, pos = segments_and_positions(tokens, EOS)
  assert (seg[:, 0] == 1).all() and (pos[:, 0] == 0).all()
  after_eos = tokens[:, :-1] == EOS
  assert np.array_equal(pos[:, 1:] == 0, after_eos)
  assert np.array_equal(np.diff(seg, axis=1), after_eos.astype(seg.dtype))
  assert ((pos[:, 1:] == pos[:, :-1] + 1) | after_eos).all()


def test_eval_windows_counts_and_boundaries() -> None:
  split = synthetic_split([5, 10, 3, 8, 4])
  windows = eval_windows(split, length=4)
  assert (windows.num_windows, windows.num_documents, windows.num_tokens) == (6, 4, 24)
  assert windows.document_index.tolist() == [0, 1, 1, 3, 3, 4]
  assert not (windows.tokens == EOS).any()
  for w, d, o in zip(windows.tokens, windows.document_index, windows.offsets):
    assert np.array_equal(w, split.document(int(d))[o : o + 4])
  assert eval_windows(split, length=11).num_windows == 0
  with pytest.raises(ValueError, match="length=1"):
    eval_windows(split, length=1)


def test_eval_windows_on_embedded_validation(tmp_path: Path) -> None:
  split = tokenize_split({"source": "embedded"}, "validation", load_tokenizer(), cache_dir=tmp_path)
  windows = eval_windows(split, length=2048)
  assert windows.num_documents >= 5 and windows.num_windows >= 40
  assert windows.tokens.shape == (windows.num_windows, 2048) and windows.tokens.dtype == np.int32
  lengths = split.doc_ends - split.doc_offsets - 1
  assert windows.num_windows == int((lengths // 2048).sum())
  assert not (windows.tokens == split.eos_id).any()
  assert eval_windows(split, length=1024, max_windows=3).num_windows == 3


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch) -> None:
  monkeypatch.delenv("HOPE_JAX_CACHE", raising=False)
  assert batches.default_cache_dir() == Path("~/.cache/hope_jax").expanduser()


SHARED_PROSE = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "prose"


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_PROSE.exists(), reason="needs ../shared/corpus beside the checkout")
def test_shared_prose_validation_has_long_documents(tmp_path: Path) -> None:
  spec = {"source": "local", "path": str(SHARED_PROSE), "data_dir": str(tmp_path / "d")}
  split = tokenize_split(spec, "validation", load_tokenizer(), cache_dir=tmp_path / "c")
  assert split.num_documents == 159
  assert eval_windows(split, length=16384).num_documents >= 12


def test_tokenizing_reports_progress_with_an_eta_where_the_count_is_known(
  tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
  from hope_jax.data import token_cache

  monkeypatch.setattr(token_cache, "BATCH_DOCS", 1)  # one document a batch: a report after each
  monkeypatch.setattr(token_cache, "PROGRESS_INTERVAL_S", 0.0)
  corpus = tmp_path / "corpus"
  corpus.mkdir()
  with open(corpus / "train.jsonl", "w", encoding="utf-8") as f:
    f.writelines(json.dumps({"text": f"document number {i}"}) + "\n" for i in range(3))
  spec = {"source": "local", "path": str(corpus), "data_dir": str(tmp_path / "tfds")}
  tok = load_tokenizer()
  tokenize_split(spec, "train", tok, cache_dir=tmp_path / "quiet")
  assert "tokenizing" not in capsys.readouterr().err  # progress is off by default
  tokenize_split(spec, "train", tok, cache_dir=tmp_path / "loud", progress=True)
  lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("tokenizing")]
  assert [x.split(": ")[1].split(" ")[0] for x in lines] == ["1/3", "2/3", "3/3"]
  assert all("; ETA " in x for x in lines) and lines[-1].endswith("ETA 0s")
  tokenize_split({"source": "embedded"}, "validation", tok, cache_dir=tmp_path, progress=True)
  embedded = [x for x in capsys.readouterr().err.splitlines() if x.startswith("tokenizing")]
  assert embedded and all(x.endswith(" tokens") for x in embedded)  # no count, no ETA
