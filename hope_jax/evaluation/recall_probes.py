"""Associative-recall probes: key -> value demonstrations, filler, then queries on the values.

A format (:class:`RecallFormat`) writes the demonstration lines and the filler: single-token
random pairs, ``key: value`` word lines, or dict-literal code lines.  Examples follow the
conventions of :mod:`hope_jax.evaluation.probes` (label-aligned ``target_mask``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from hope_jax.data.batches import TokenizedSplit
from hope_jax.evaluation.probes import (
  PASSKEY_FILLER,
  SPECIAL_IDS,
  ProbeExamples,
  TextTokenizer,
  draw_tokens,
  move_bare_spaces,
  stack_rows,
)

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


def _key_words(rng: np.random.Generator, num_pairs: int) -> list[str]:
  """``num_pairs`` distinct key words drawn from :data:`KEY_WORDS`."""
  if num_pairs > len(KEY_WORDS):
    raise ValueError(f"num_pairs={num_pairs} exceeds the {len(KEY_WORDS)} available key words")
  return [KEY_WORDS[i] for i in rng.choice(len(KEY_WORDS), size=num_pairs, replace=False)]


@dataclasses.dataclass(frozen=True, eq=False)
class _TokenizedLines:
  """A format whose lines are text encoded by ``tokenizer``; rows are padded with its pad id."""

  tokenizer: TextTokenizer

  @property
  def pad_id(self) -> int:
    return self.tokenizer.pad_id


@dataclasses.dataclass(frozen=True, eq=False)
class WordLines(_TokenizedLines):
  """Lines ``"key: value\n"`` from the fixed word lists; filler: the passkey sentences."""

  def lines(self, rng, num_pairs):
    keys = _key_words(rng, num_pairs)
    values = rng.integers(0, len(VALUE_WORDS), size=num_pairs)
    encode = self.tokenizer.encode
    return _key_value_lines(
      [(encode(k + ":"), encode(" " + VALUE_WORDS[v])) for k, v in zip(keys, values)],
      encode("\n"),
    )

  def filler(self, rng, size):
    text = [t for s in PASSKEY_FILLER for t in self.tokenizer.encode(" " + s)]
    return _cut_to_newline(text, self.tokenizer.encode("\n"), size)


@dataclasses.dataclass(frozen=True, eq=False)
class CodeLines(_TokenizedLines):
  """Dict-literal lines ``    "key": 1234,\n`` (a key word, a random 4-digit value); filler:
  a span of natural code from ``split`` ending in a newline."""

  split: TokenizedSplit

  def lines(self, rng, num_pairs):
    keys = _key_words(rng, num_pairs)
    values = rng.integers(1000, 10_000, size=num_pairs)
    encode = self.tokenizer.encode
    pairs = [  # A bare space before the digits belongs to the key.
      move_bare_spaces(self.tokenizer, encode(f'    "{k}":'), encode(f" {v}"))
      for k, v in zip(keys, values)
    ]
    return _key_value_lines(pairs, encode(",\n"))

  def filler(self, rng, size):
    newline = self.tokenizer.encode("\n")
    text = draw_tokens(self.split, rng, max(size - len(newline), 1), vocab_size=None)
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
  tokens, target_mask = stack_rows(rows, masks, pad_id=source.pad_id)
  meta = {
    "probe": "associative_recall",
    "num_pairs": num_pairs,
    "num_queries": num_queries,
    "distance": distance,
    "seed": seed,
    "distances": np.asarray(distances, dtype=np.int64),
  }
  return ProbeExamples(tokens, target_mask, meta)
