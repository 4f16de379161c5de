"""Tests of the synthetic probes: copy, passkey retrieval (probes) and associative recall."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hope_jax.data.batches import TokenizedSplit
from hope_jax.data.tokenizer import load_tokenizer
from hope_jax.evaluation.probes import (
  PASSKEY_FILLER,
  PASSKEY_INTRO,
  copy_examples,
  masked_accuracy,
  passkey_example,
  passkey_examples,
  score_passkey,
  seen_token_ids,
)
from hope_jax.evaluation.recall_probes import (
  CodeLines,
  RandomPairs,
  WordLines,
  associative_recall_examples,
)

EOS = 3


def natural_split() -> TokenizedSplit:
  """A stream of distinct tokens with an EOS every 50 tokens."""
  tokens = np.arange(10, 2010, dtype=np.int32)
  tokens[49::50] = EOS
  return TokenizedSplit(tokens, np.arange(0, 2000, 50, dtype=np.int64), EOS)


def test_copy_random_layout_and_mask() -> None:
  ex = copy_examples(seed=0, num_examples=3, segment_length=8, gap=5, vocab_size=100)
  assert ex.tokens.shape == (3, 21) and ex.tokens.dtype == np.int32
  assert np.array_equal(ex.tokens[:, :8], ex.tokens[:, 13:])
  assert ((ex.tokens >= 4) & (ex.tokens < 100)).all()
  assert ex.target_mask[:, 14:].all() and not ex.target_mask[:, :14].any()
  assert ex.num_targets == 3 * 7
  assert masked_accuracy(ex.tokens, ex).tolist() == [1.0, 1.0, 1.0]
  shifted = np.roll(ex.tokens, 1, axis=1)
  assert masked_accuracy(shifted, ex).max() < 0.5


def test_copy_is_seeded() -> None:
  a = copy_examples(seed=1, num_examples=2, segment_length=6, gap=3, vocab_size=1000)
  b = copy_examples(seed=1, num_examples=2, segment_length=6, gap=3, vocab_size=1000)
  c = copy_examples(seed=2, num_examples=2, segment_length=6, gap=3, vocab_size=1000)
  assert np.array_equal(a.tokens, b.tokens) and not np.array_equal(a.tokens, c.tokens)


def test_copy_from_natural_text() -> None:
  split = natural_split()
  ex = copy_examples(seed=0, num_examples=4, segment_length=10, gap=20, source=split)
  stream = np.asarray(split.tokens)
  for row in ex.tokens:
    start = int(np.flatnonzero(stream == row[0])[0])
    assert np.array_equal(stream[start : start + 10], row[:10])  # a contiguous span
    assert not (row == EOS).any()
  mixed = copy_examples(
    seed=0,
    num_examples=2,
    segment_length=10,
    gap=20,
    source=split,
    gap_source="random",
    vocab_size=50,
  )
  assert (mixed.tokens[:, 10:30] < 50).all()
  with pytest.raises(ValueError, match="vocab_size"):
    copy_examples(seed=0, num_examples=1, segment_length=4, gap=0, source="random")


def test_passkey_layout() -> None:
  tok = load_tokenizer()
  ex = passkey_example(tok, length=600, depth=0.5, seed=7)
  assert ex.tokens.shape == (600,) and 10_000 <= ex.key < 100_000
  text = tok.decode(ex.tokens[: ex.metadata["num_tokens"]])
  assert text.startswith(PASSKEY_INTRO)
  assert f"The pass key is {ex.key}. Remember it. {ex.key} is the pass key." in text
  assert text.endswith(f"What is the pass key? The pass key is {ex.key}")
  longest_sentence = max(len(tok.encode(" " + s)) for s in PASSKEY_FILLER)
  assert 600 - longest_sentence < ex.metadata["num_tokens"] <= 600
  assert (ex.tokens[ex.metadata["num_tokens"] :] == tok.pad_id).all()
  scored = ex.tokens[ex.target_mask]
  assert tok.decode(scored).strip() == str(ex.key) and list(scored) == list(ex.answer_ids)
  assert ex.target_mask.sum() == len(ex.answer_ids) and ex.target_mask[ex.answer_start]


def test_passkey_depth_moves_the_needle() -> None:
  tok = load_tokenizer()
  starts = [
    passkey_example(tok, length=400, depth=d, seed=3).metadata["needle_start"]
    for d in (0.0, 0.5, 1.0)
  ]
  assert starts[0] == len(tok.encode(PASSKEY_INTRO)) and starts[0] < starts[1] < starts[2]
  batch = passkey_examples(tok, length=300, depths=[0.0, 0.25, 1.0], seed=0)
  assert batch.tokens.shape == (3, 300) and batch.target_mask.sum(axis=1).min() >= 5
  with pytest.raises(ValueError, match="length=20"):
    passkey_example(tok, length=20, depth=0.5, seed=0)
  with pytest.raises(ValueError, match="depth=1.5"):
    passkey_example(tok, length=300, depth=1.5, seed=0)


def test_score_passkey_accepts_only_the_exact_key() -> None:
  tok = load_tokenizer()
  ex = passkey_example(tok, length=200, depth=0.3, seed=11)
  key = str(ex.key)
  wrong_digit = key[:-1] + str((int(key[-1]) + 1) % 10)
  assert score_passkey(ex.tokens[ex.target_mask], ex)
  assert score_passkey(tok.encode(key + ". Remember"), ex)
  assert not score_passkey(tok.encode(wrong_digit), ex)
  assert not score_passkey(tok.encode(key[:-1]), ex)  # a prefix
  assert not score_passkey(tok.encode(key + "7"), ex)  # a longer number
  assert not score_passkey([], ex)


def test_associative_recall_words() -> None:
  tok = load_tokenizer()
  ex = associative_recall_examples(
    WordLines(tok), seed=0, num_pairs=6, num_queries=3, distance=60, num_examples=4
  )
  assert ex.tokens.shape[0] == 4 and ex.metadata["distances"].shape == (4, 3)
  for row, mask, dist in zip(ex.tokens, ex.target_mask, ex.metadata["distances"]):
    text = tok.decode(row[row != tok.pad_id])
    lines = text.split("\n")
    demos, queries = lines[:6], lines[-4:-1]
    assert queries == demos[:3]  # the first demonstrations are queried, in order
    values = tok.decode(row[mask]).split()
    assert values == [d.split(": ")[1] for d in demos[:3]]
    assert dist[0] == 60 and abs(dist - 60).max() <= 4
  with pytest.raises(ValueError, match="distance=5"):
    associative_recall_examples(WordLines(tok), seed=0, num_pairs=6, num_queries=3, distance=5)


def test_associative_recall_random_tokens_exact_distance() -> None:
  def pairs(seed: int):
    return associative_recall_examples(
      RandomPairs.over_vocabulary(3000),
      seed=seed,
      num_pairs=8,
      num_queries=4,
      distance=50,
      num_examples=3,
    )

  ex = pairs(4)
  assert (ex.metadata["distances"] == 50).all()
  for row, mask in zip(ex.tokens, ex.target_mask):
    demo_values = dict(zip(row[:16:2].tolist(), row[1:16:2].tolist()))
    positions = np.flatnonzero(mask)
    assert len(positions) == 4
    for p in positions:
      key, value = int(row[p - 1]), int(row[p])
      assert demo_values[key] == value
      demo_pos = int(np.flatnonzero(row[:16] == key)[0]) + 1
      assert (p - 1) - (demo_pos + 1) == 50  # query start minus demonstration end
  other = pairs(5)
  assert not np.array_equal(ex.tokens, other.tokens)
  with pytest.raises(ValueError, match="num_queries=9"):
    associative_recall_examples(
      RandomPairs.over_vocabulary(3000), seed=0, num_pairs=8, num_queries=9, distance=50
    )


def test_seen_token_ids_and_random_copy_over_them() -> None:
  tokens = np.array([5, 5, 7, 7, 7, 9, EOS, 2, 2, 2, 11, 11, EOS], dtype=np.int32)
  split = TokenizedSplit(tokens, np.array([0, 7], dtype=np.int64), EOS)
  assert seen_token_ids(split, min_count=2).tolist() == [5, 7, 11]  # not EOS, not special 2
  assert seen_token_ids(split, min_count=1).tolist() == [5, 7, 9, 11]
  with pytest.raises(ValueError, match="min_count=3"):
    seen_token_ids(split, min_count=3)
  pool = np.array([100, 200, 300], dtype=np.int32)
  ex = copy_examples(seed=0, num_examples=4, segment_length=12, gap=6, source=pool)
  assert np.isin(ex.tokens, pool).all() and np.array_equal(ex.tokens[:, :12], ex.tokens[:, 18:])


def test_random_pairs_over_a_pool_keep_the_thirds_apart() -> None:
  pool = np.arange(1000, 1030)
  ex = associative_recall_examples(
    RandomPairs(pool), seed=3, num_pairs=5, num_queries=5, distance=40, num_examples=3
  )
  assert ex.tokens.shape == (3, 10 + 32 + 10)  # filler: 40 minus the 4 later pairs
  keys, values, filler = ex.tokens[:, 0:10:2], ex.tokens[:, 1:10:2], ex.tokens[:, 10:-10]
  assert ((keys >= 1000) & (keys < 1010)).all() and ((values >= 1010) & (values < 1020)).all()
  assert ((filler >= 1020) & (filler < 1030)).all()
  assert np.array_equal(ex.tokens[:, -10:], ex.tokens[:, :10])  # every pair queried, in order


def test_code_recall_lines_filler_and_targets() -> None:
  tok = load_tokenizer()
  text = "def f(x):\n    return x + 1\n\n\nclass A:\n    pass\n" * 40
  ids = np.asarray(tok.encode(text) + [tok.eos_id], np.int32)
  split = TokenizedSplit(ids, np.array([0], dtype=np.int64), tok.eos_id)
  ex = associative_recall_examples(
    CodeLines(tok, split), seed=1, num_pairs=4, num_queries=2, distance=120, num_examples=3
  )
  for row, mask, dist in zip(ex.tokens, ex.target_mask, ex.metadata["distances"]):
    text = tok.decode(row[row != tok.pad_id])
    lines = text.split("\n")
    demos, queries = lines[:4], lines[-3:-1]
    assert all(re.fullmatch(r'    "[a-z]+": \d{4},', line) for line in demos)
    assert queries == demos[:2]  # queried in order, after natural code
    assert "return x + 1" in text or "pass" in text
    values = tok.decode(row[mask])  # only the digits are scored, not the space
    assert values == "".join(d.split(": ")[1].rstrip(",") for d in demos[:2])
    assert all(tok.id_to_piece(int(t)).isdigit() for t in row[mask])
    assert dist[0] == 120
