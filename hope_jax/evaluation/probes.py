"""Synthetic long-context probes: copy, passkey retrieval and associative recall.

Every probe returns int32 ``tokens`` and a boolean ``target_mask`` of the same shape, aligned to
labels: ``target_mask[..., t]`` says whether predicting ``tokens[..., t]`` from ``tokens[..., :t]``
is scored (so ``target_mask[..., 0]`` is always False).  With ``inputs = tokens[:, :-1]`` and
``labels = tokens[:, 1:]`` the runner scores ``labels`` where ``target_mask[:, 1:]`` is True.
Examples of unequal length are right-padded with ``pad_id`` (never scored).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from hope_jax.data.batches import TokenizedSplit

PASSKEY_INTRO = (
  "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
  "I will quiz you about the important information there."
)
PASSKEY_FILLER = (
  "The grass is green.",
  "The sky is blue.",
  "The sun is yellow.",
  "Here we go.",
  "There and back again.",
)
PASSKEY_NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key."
PASSKEY_QUESTION = "What is the pass key? The pass key is"

KEY_WORDS: tuple[str, ...] = tuple(
  "apple river stone cloud tiger piano candle mirror garden rocket forest window dragon "
  "pencil castle bridge falcon lemon anchor violin desert marble harbor comet meadow "
  "lantern glacier parrot saddle thunder velvet walnut beacon cactus dolphin ember fossil "
  "goblet hammer island jacket kettle ladder magnet needle orchid pepper quartz ribbon "
  "satchel tunnel umbrella valley wagon yarrow zipper badger copper dune".split()
)
VALUE_WORDS: tuple[str, ...] = tuple(
  "red blue green black white orange purple yellow silver golden north south east west "
  "one two three four five six seven eight nine ten cold warm quiet loud early late "
  "happy sad bright dark soft hard sweet bitter round square high low fast slow old new "
  "young wild calm brave clever gentle proud shy".split()
)
SPECIAL_IDS = 4  # pad, unk, bos, eos are ids 0..3 and never drawn as random tokens.


class TextTokenizer(Protocol):
  """What the text probes need from a tokenizer (read-only attributes or properties)."""

  @property
  def vocab_size(self) -> int: ...

  @property
  def pad_id(self) -> int: ...

  def __hash__(self) -> int:  # the tokenizer keys an lru_cache
    ...

  def encode(self, text: str) -> list[int]: ...

  def id_to_piece(self, token_id: int) -> str: ...


@dataclasses.dataclass(frozen=True)
class ProbeExamples:
  """Probe sequences: ``tokens`` [N, T], label-aligned ``target_mask`` [N, T] and metadata."""

  tokens: np.ndarray
  target_mask: np.ndarray
  metadata: dict[str, Any]

  @property
  def num_targets(self) -> int:
    """Number of scored tokens."""
    return int(self.target_mask.sum())


def _stack(
  rows: Sequence[Sequence[int]], masks: Sequence[Sequence[bool]], *, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
  """Right-pad rows to equal length and stack them with their masks."""
  width = max(len(r) for r in rows)
  tokens = np.full((len(rows), width), pad_id, dtype=np.int32)
  mask = np.zeros((len(rows), width), dtype=bool)
  for i, (row, m) in enumerate(zip(rows, masks)):
    tokens[i, : len(row)] = row
    mask[i, : len(m)] = m
  mask[:, 0] = False
  return tokens, mask


def masked_accuracy(predicted: np.ndarray, examples: ProbeExamples) -> np.ndarray:
  """Per-example accuracy of ``predicted`` (aligned with ``tokens``) on the scored positions."""
  hits = (np.asarray(predicted) == examples.tokens) & examples.target_mask
  return hits.sum(axis=-1) / np.maximum(examples.target_mask.sum(axis=-1), 1)


# ----------------------------------------------------------------------------------------------
# Copy.


def seen_token_ids(split: TokenizedSplit, *, min_count: int) -> np.ndarray:
  """Sorted ids, special ones and EOS excluded, that occur at least ``min_count`` times in split.

  A model never learns to predict an id its training text lacks (its output logit is pushed down
  at every step), so random tokens drawn over the whole vocabulary test that, not copying.
  """
  counts = np.bincount(np.asarray(split.tokens, np.int64), minlength=SPECIAL_IDS + 1)
  counts[:SPECIAL_IDS] = 0
  counts[split.eos_id] = 0
  ids = np.flatnonzero(counts >= min_count).astype(np.int32)
  if ids.size < 3:
    raise ValueError(
      f"only {ids.size} token ids occur >= min_count={min_count} times in the split; need 3"
    )
  return ids


def _draw(
  source: TokenizedSplit | np.ndarray | str,
  rng: np.random.Generator,
  n: int,
  *,
  vocab_size: int | None,
) -> np.ndarray:
  """``n`` tokens: a natural-text span without EOS (a TokenizedSplit), ids drawn uniformly from
  an array of ids, or uniformly from the vocabulary beyond the special ids ("random")."""
  if isinstance(source, TokenizedSplit):
    if source.num_tokens <= n:
      raise ValueError(f"segment of {n} tokens does not fit a split of {source.num_tokens} tokens")
    for _ in range(100):
      start = int(rng.integers(0, source.num_tokens - n))
      span = np.asarray(source.tokens[start : start + n], dtype=np.int32)
      if not (span == source.eos_id).any():
        return span
    return span
  if isinstance(source, np.ndarray):
    return rng.choice(source, size=n).astype(np.int32)
  if source != "random":
    raise ValueError(f"source={source!r} must be a TokenizedSplit, an id array or 'random'")
  if not vocab_size or vocab_size <= SPECIAL_IDS:
    raise ValueError(f"vocab_size={vocab_size!r} must be > {SPECIAL_IDS} for random tokens")
  return rng.integers(SPECIAL_IDS, vocab_size, size=n, dtype=np.int32)


def copy_examples(
  *,
  seed: int,
  num_examples: int,
  segment_length: int,
  gap: int,
  source: TokenizedSplit | np.ndarray | str = "random",
  gap_source: TokenizedSplit | np.ndarray | str | None = None,
  vocab_size: int | None = None,
) -> ProbeExamples:
  """Segment, gap, the same segment again; scored on the second copy except its first token."""
  if segment_length < 2 or gap < 0:
    raise ValueError(f"segment_length={segment_length} must be >= 2 and gap={gap} >= 0")
  rng = np.random.default_rng([seed, 0xC0B1])
  gap_source = source if gap_source is None else gap_source
  width = 2 * segment_length + gap
  tokens = np.empty((num_examples, width), dtype=np.int32)
  for i in range(num_examples):
    segment = _draw(source, rng, segment_length, vocab_size=vocab_size)
    filler = _draw(gap_source, rng, gap, vocab_size=vocab_size) if gap else np.empty(0, np.int32)
    tokens[i] = np.concatenate([segment, filler, segment])
  mask = np.zeros_like(tokens, dtype=bool)
  mask[:, segment_length + gap + 1 :] = True
  meta = {
    "probe": "copy",
    "segment_length": segment_length,
    "gap": gap,
    "seed": seed,
    "second_copy_start": segment_length + gap,
  }
  return ProbeExamples(tokens, mask, meta)


# ----------------------------------------------------------------------------------------------
# Passkey retrieval (Mohtashami & Jaggi, 2023).


@dataclasses.dataclass(frozen=True)
class PasskeyExample:
  """One passkey sequence of exactly ``length`` tokens; the answer follows the question."""

  tokens: np.ndarray
  target_mask: np.ndarray
  key: int
  answer_ids: tuple[int, ...]
  answer_start: int
  digit_ids: frozenset[int]
  metadata: dict[str, Any]


@functools.lru_cache(maxsize=8)
def _digit_ids(tokenizer: TextTokenizer) -> frozenset[int]:
  """Ids of pieces made only of digits (optionally after the whitespace marker)."""
  return frozenset(
    i for i in range(tokenizer.vocab_size) if re.fullmatch(r"\u2581?\d+", tokenizer.id_to_piece(i))
  )


def passkey_example(
  tokenizer: TextTokenizer, *, length: int, depth: float, seed: int
) -> PasskeyExample:
  """A passkey sequence of ``length`` tokens, the needle after ``depth`` of the filler sentences.

  The filler is whole sentences cycled from :data:`PASSKEY_FILLER`, as many as fit, so the text
  is within one filler sentence of ``length`` tokens; the rest is right-padded with ``pad_id``.
  """
  if not 0.0 <= depth <= 1.0:
    raise ValueError(f"depth={depth} must be in [0, 1]")
  key = int(np.random.default_rng([seed, 0x9A55]).integers(10_000, 100_000))
  intro = tokenizer.encode(PASSKEY_INTRO)
  needle = tokenizer.encode(" " + PASSKEY_NEEDLE.format(key=key))
  question = tokenizer.encode(" " + PASSKEY_QUESTION)
  answer = tokenizer.encode(f" {key}")
  while answer and not tokenizer.id_to_piece(answer[0]).strip("\u2581 "):
    question, answer = question + answer[:1], answer[1:]  # A bare space belongs to the question.
  sentences = [tokenizer.encode(" " + s) for s in PASSKEY_FILLER]
  fixed = len(intro) + len(needle) + len(question) + len(answer)
  if fixed > length:
    raise ValueError(
      f"length={length} is too short for a passkey example (needs >= {fixed} tokens)"
    )
  filler: list[list[int]] = []
  budget = length - fixed
  while budget >= len(sentences[len(filler) % len(sentences)]):
    filler.append(sentences[len(filler) % len(sentences)])
    budget -= len(filler[-1])
  cut = int(round(depth * len(filler)))
  body = [t for s in filler[:cut] for t in s] + needle + [t for s in filler[cut:] for t in s]
  ids = intro + body + question
  answer_start = len(ids)
  ids = ids + answer
  mask = [False] * answer_start + [True] * len(answer)
  tokens, target_mask = _stack(
    [ids + [tokenizer.pad_id] * (length - len(ids))], [mask], pad_id=tokenizer.pad_id
  )
  needle_start = len(intro) + sum(len(s) for s in filler[:cut])
  meta = {
    "probe": "passkey",
    "length": length,
    "depth": depth,
    "seed": seed,
    "num_tokens": len(ids),
    "filler_sentences": len(filler),
    "needle_start": needle_start,
  }
  return PasskeyExample(
    tokens[0], target_mask[0], key, tuple(answer), answer_start, _digit_ids(tokenizer), meta
  )


def passkey_examples(
  tokenizer: TextTokenizer, *, length: int, depths: Sequence[float], seed: int
) -> ProbeExamples:
  """One passkey example per depth (seeds ``seed + i``), stacked."""
  examples = [
    passkey_example(tokenizer, length=length, depth=d, seed=seed + i) for i, d in enumerate(depths)
  ]
  meta = {
    "probe": "passkey",
    "length": length,
    "depths": list(depths),
    "keys": [e.key for e in examples],
  }
  return ProbeExamples(
    np.stack([e.tokens for e in examples]), np.stack([e.target_mask for e in examples]), meta
  )


def score_passkey(predicted_tokens: Sequence[int] | np.ndarray, example: PasskeyExample) -> bool:
  """True iff the tokens produced for the answer are exactly the key (no prefix, no extra digit)."""
  predicted = [int(t) for t in np.asarray(predicted_tokens).ravel()]
  n = len(example.answer_ids)
  if predicted[:n] != list(example.answer_ids):
    return False
  return len(predicted) == n or predicted[n] not in example.digit_ids


# ----------------------------------------------------------------------------------------------
# Associative recall (few-shot key -> value lookup).


class RecallFormat(Protocol):
  """How associative-recall demonstrations and the filler after them are written."""

  @property
  def pad_id(self) -> int: ...

  def lines(
    self, rng: np.random.Generator, num_pairs: int
  ) -> tuple[list[list[int]], list[list[bool]]]:
    """``num_pairs`` demonstration lines and their masks (True on the value's tokens)."""
    ...

  def filler(self, rng: np.random.Generator, size: int) -> list[int]:
    """Exactly ``size`` filler tokens between the demonstrations and the queries."""
    ...


@dataclasses.dataclass(frozen=True, eq=False)
class RandomPairs:
  """Single-token pairs ``key value``: keys, values and filler from disjoint thirds of ``ids``."""

  ids: np.ndarray
  pad_id: int = 0

  @classmethod
  def over_vocabulary(cls, vocab_size: int) -> RandomPairs:
    """Pairs over every id of the vocabulary beyond the special ones."""
    return cls(np.arange(SPECIAL_IDS, vocab_size))

  def _third(self, i: int) -> np.ndarray:
    third = len(self.ids) // 3
    return self.ids[i * third : (i + 1) * third] if i < 2 else self.ids[2 * third :]

  def lines(self, rng, num_pairs):
    if len(self.ids) // 3 < num_pairs:
      raise ValueError(
        f"{len(self.ids)} token ids are too few for num_pairs={num_pairs} random keys"
      )
    keys = rng.choice(self._third(0), size=num_pairs, replace=False)
    values = self._third(1)[rng.integers(0, len(self._third(1)), size=num_pairs)]
    return [[int(k), int(v)] for k, v in zip(keys, values)], [[False, True]] * num_pairs

  def filler(self, rng, size):
    return rng.choice(self._third(2), size=size).tolist()


def _cut_to_newline(text_ids: np.ndarray | list[int], newline: list[int], size: int) -> list[int]:
  """``size`` tokens: the text cut to size - len(newline), then a newline (when it fits)."""
  if size < len(newline):
    return np.resize(np.asarray(text_ids), size).tolist()
  return np.resize(np.asarray(text_ids), size - len(newline)).tolist() + newline


@dataclasses.dataclass(frozen=True, eq=False)
class WordLines:
  """Lines ``"key: value\n"`` from the fixed word lists; filler: the passkey sentences."""

  tokenizer: TextTokenizer

  @property
  def pad_id(self) -> int:
    return self.tokenizer.pad_id

  def lines(self, rng, num_pairs):
    if num_pairs > len(KEY_WORDS):
      raise ValueError(f"num_pairs={num_pairs} exceeds the {len(KEY_WORDS)} available key words")
    keys = rng.choice(len(KEY_WORDS), size=num_pairs, replace=False)
    values = rng.integers(0, len(VALUE_WORDS), size=num_pairs)
    encode = self.tokenizer.encode
    return _key_value_lines(
      [(encode(KEY_WORDS[k] + ":"), encode(" " + VALUE_WORDS[v])) for k, v in zip(keys, values)],
      encode("\n"),
    )

  def filler(self, rng, size):
    text = [t for s in PASSKEY_FILLER for t in self.tokenizer.encode(" " + s)]
    return _cut_to_newline(text, self.tokenizer.encode("\n"), size)


@dataclasses.dataclass(frozen=True, eq=False)
class CodeLines:
  """Dict-literal lines ``    "key": 1234,\n`` (a key word, a random 4-digit value); filler:
  a span of natural code from ``split`` ending in a newline."""

  tokenizer: TextTokenizer
  split: TokenizedSplit

  @property
  def pad_id(self) -> int:
    return self.tokenizer.pad_id

  def lines(self, rng, num_pairs):
    if num_pairs > len(KEY_WORDS):
      raise ValueError(f"num_pairs={num_pairs} exceeds the {len(KEY_WORDS)} available key words")
    keys = rng.choice(len(KEY_WORDS), size=num_pairs, replace=False)
    values = rng.integers(1000, 10_000, size=num_pairs)
    pairs = []
    for k, v in zip(keys, values):
      head, value = self.tokenizer.encode(f'    "{KEY_WORDS[k]}":'), self.tokenizer.encode(f" {v}")
      while value and not self.tokenizer.id_to_piece(value[0]).strip("\u2581 "):
        head, value = head + value[:1], value[1:]  # A bare space belongs to the key.
      pairs.append((head, value))
    return _key_value_lines(pairs, self.tokenizer.encode(",\n"))

  def filler(self, rng, size):
    newline = self.tokenizer.encode("\n")
    text = _draw(self.split, rng, max(size - len(newline), 1), vocab_size=None)
    return _cut_to_newline(text, newline, size)


def _key_value_lines(
  pairs: Sequence[tuple[list[int], list[int]]], tail: list[int]
) -> tuple[list[list[int]], list[list[bool]]]:
  """Lines head + value + tail with masks True on the value's tokens."""
  lines = [head + value + tail for head, value in pairs]
  masks = [[False] * len(h) + [True] * len(v) + [False] * len(tail) for h, v in pairs]
  return lines, masks


def associative_recall_examples(
  source: RecallFormat,
  *,
  seed: int,
  num_pairs: int,
  num_queries: int,
  distance: int,
  num_examples: int = 1,
) -> ProbeExamples:
  """``num_pairs`` key->value demonstrations, filler, then ``num_queries`` queries on the values.

  The first ``num_queries`` demonstrations (their keys are random) are queried in order, and the
  filler between demonstrations and queries is sized so that the first query starts ``distance``
  tokens after the end of its demonstration; ``metadata["distances"]`` holds every query's
  exact distance (equal for single-token random pairs, within a line's length for lines).
  """
  if not 1 <= num_queries <= num_pairs:
    raise ValueError(f"num_queries={num_queries} must be in [1, num_pairs={num_pairs}]")
  rng = np.random.default_rng([seed, 0xA55C])
  rows, masks, distances = [], [], []
  for _ in range(num_examples):
    lines, line_masks = source.lines(rng, num_pairs)
    lengths = [len(line) for line in lines]
    gap = distance - (sum(lengths) - lengths[0])
    if gap < 0:
      raise ValueError(
        f"distance={distance} is below the minimum {sum(lengths) - lengths[0]} "
        f"for num_pairs={num_pairs}"
      )
    filler = source.filler(rng, gap)
    demos = [t for line in lines for t in line]
    queries = [t for line in lines[:num_queries] for t in line]
    rows.append(demos + filler + queries)
    masks.append([False] * (len(demos) + gap) + [m for mk in line_masks[:num_queries] for m in mk])
    distances.append([sum(lengths) - lengths[j] + gap for j in range(num_queries)])
  tokens, target_mask = _stack(rows, masks, pad_id=source.pad_id)
  meta = {
    "probe": "associative_recall",
    "num_pairs": num_pairs,
    "num_queries": num_queries,
    "distance": distance,
    "seed": seed,
    "distances": np.asarray(distances, dtype=np.int64),
  }
  return ProbeExamples(tokens, target_mask, meta)
