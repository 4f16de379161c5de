"""Synthetic long-context probes: copy and passkey retrieval (recall: :mod:`recall_probes`).

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


def stack_rows(
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


def draw_tokens(
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
    segment = draw_tokens(source, rng, segment_length, vocab_size=vocab_size)
    filler = (
      draw_tokens(gap_source, rng, gap, vocab_size=vocab_size) if gap else np.empty(0, np.int32)
    )
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


def move_bare_spaces(
  tokenizer: TextTokenizer, head: list[int], target: list[int]
) -> tuple[list[int], list[int]]:
  """Moves the target's leading whitespace-only pieces to the end of head: they are not scored."""
  while target and not tokenizer.id_to_piece(target[0]).strip("\u2581 "):
    head, target = head + target[:1], target[1:]
  return head, target


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
  question, answer = move_bare_spaces(tokenizer, question, answer)
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
  tokens, target_mask = stack_rows(
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
