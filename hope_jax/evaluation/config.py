"""Typed evaluation settings: shared options and one frozen spec per evaluation, validated once.

Lengths, gaps and distances are multiples of the training length L.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

EVALUATION_NAMES: tuple[str, ...] = ("perplexity", "copy", "passkey", "recall", "attention")
SCALINGS: tuple[str, ...] = ("none", "linear", "ntk", "yarn", "llama3")
COPY_SOURCES: tuple[str, ...] = ("text", "random", "random_seen")
RECALL_SOURCES: tuple[str, ...] = ("words", "random", "code")


def _fail(field: str, value: Any, requirement: str) -> None:
  raise ValueError(f"config.eval.{field} must be {requirement}, got eval.{field}={value!r}")


def _positive_int(field: str, value: Any, *, minimum: int = 1) -> None:
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    _fail(field, value, f"an integer >= {minimum}")


def _numbers(field: str, values: Sequence[Any], *, positive: bool = False) -> tuple:
  """Returns values as a tuple of numbers, all >= 0 (> 0 when positive), or raises naming field."""
  values = tuple(values)
  if not values or any(
    isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (positive and v == 0)
    for v in values
  ):
    _fail(
      field, values, f"a non-empty list of {'positive' if positive else 'non-negative'} numbers"
    )
  return values


def _names(field: str, values: Sequence[str], known: Sequence[str]) -> tuple[str, ...]:
  values = tuple(values)
  unknown = [v for v in values if v not in known]
  if unknown:
    raise ValueError(f"config.eval.{field} has unknown name(s) {unknown}; known: {sorted(known)}")
  return values


def _put(spec: Any, **fields: Any) -> None:
  for name, value in fields.items():
    object.__setattr__(spec, name, value)


@dataclasses.dataclass(frozen=True)
class PerplexitySpec:
  """Non-overlapping windows of validation documents, one forward pass each."""

  lengths: tuple[float, ...] = (1, 2, 4, 8, 16, 32)  # lengths no document reaches are skipped
  max_windows: int = 64  # per length, spread over all windows; 0 = all
  position_buckets: int = 16  # mean NLL over this many equal position ranges of a window

  def __post_init__(self):
    """Validates every field, naming it."""
    _put(self, lengths=_numbers("perplexity.lengths", self.lengths, positive=True))
    _positive_int("perplexity.max_windows", self.max_windows, minimum=0)
    _positive_int("perplexity.position_buckets", self.position_buckets)


@dataclasses.dataclass(frozen=True)
class CopySpec:
  """A segment, a gap, the segment again; greedy next-token accuracy on the second copy."""

  segment_length: int = 16  # tokens per segment
  gaps: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0)
  # validation-split spans, random ids, or random ids among those the split uses (>= 16 times)
  sources: tuple[str, ...] = ("text", "random")
  examples: int = 8  # per (source, gap)

  def __post_init__(self):
    """Validates every field, naming it."""
    _positive_int("copy.segment_length", self.segment_length)
    _put(
      self,
      gaps=_numbers("copy.gaps", self.gaps),
      sources=_names("copy.sources", self.sources, COPY_SOURCES),
    )
    _positive_int("copy.examples", self.examples)


@dataclasses.dataclass(frozen=True)
class PasskeySpec:
  """A key hidden in filler at a depth; all key digits must be greedy-decoded right."""

  lengths: tuple[float, ...] = (1, 2, 4, 8)  # lengths below ~80 tokens are skipped
  depths: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # needle position in the filler
  keys: int = 4  # random keys per (length, depth) cell

  def __post_init__(self):
    """Validates every field, naming it."""
    depths = _numbers("passkey.depths", self.depths)
    if any(d > 1 for d in depths):
      _fail("passkey.depths", depths, "fractions in [0, 1]")
    _put(self, lengths=_numbers("passkey.lengths", self.lengths, positive=True), depths=depths)
    _positive_int("passkey.keys", self.keys)


@dataclasses.dataclass(frozen=True)
class RecallSpec:
  """Key->value demonstrations, filler, then queries; a query counts when all value tokens match."""

  pairs: tuple[int, ...] = (2, 4, 8)  # number of demonstrations
  distances: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # demonstration-to-query distance
  queries: int = 2  # queries per example (at most the number of pairs)
  examples: int = 8  # per (source, pairs, distance)
  # "key: value" word lines, random single-token pairs, or '"key": 1234,' dict-literal code lines
  sources: tuple[str, ...] = ("words", "random")

  def __post_init__(self):
    """Validates every field, naming it."""
    pairs = tuple(self.pairs)
    for value in pairs:
      _positive_int("recall.pairs", value)
    _put(
      self,
      pairs=pairs,
      distances=_numbers("recall.distances", self.distances),
      sources=_names("recall.sources", self.sources, RECALL_SOURCES),
    )
    _positive_int("recall.queries", self.queries)
    _positive_int("recall.examples", self.examples)


@dataclasses.dataclass(frozen=True)
class AttentionSpec:
  """Attention probability and per-band q·k contributions versus relative distance (XLA path)."""

  length: float = 2  # window length (memory quadratic in it: keep it small)
  windows: int = 4  # windows, one per batch shard at a time
  buckets: int = 16  # log-spaced relative-distance buckets (distance 0 its own)
  position_offset: int = 0  # positions start here (probes absolute-position effects)

  def __post_init__(self):
    """Validates every field, naming it."""
    _numbers("attention.length", (self.length,), positive=True)
    _positive_int("attention.windows", self.windows)
    _positive_int("attention.buckets", self.buckets, minimum=2)
    _positive_int("attention.position_offset", self.position_offset, minimum=0)


SPECS: dict[str, type] = {
  "perplexity": PerplexitySpec,
  "copy": CopySpec,
  "passkey": PasskeySpec,
  "recall": RecallSpec,
  "attention": AttentionSpec,
}


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Options every evaluation shares, and one spec per evaluation."""

  split: str = "validation"
  evaluations: tuple[str, ...] = EVALUATION_NAMES
  step: int = -1  # checkpoint step; -1 = latest
  output_dir: str = ""  # under the workdir; "" = "eval", or "eval_<scaling>[_x<factor>]"
  scaling: str = "none"  # context extension at evaluation time: one of SCALINGS
  scaling_factor: float = 0.0  # 0 = evaluation length / training length
  logn_scaling: bool = False  # evaluate with log-length query scaling
  batch_tokens: int = 16384  # sequences per forward pass = max(1, batch_tokens // length)
  logits_chunk: int = 8192  # the output head runs over slices of this many tokens (memory)
  probe_seed: int = 0  # seeds every probe's examples
  # Windows of at least this many tokens run one block at a time (evaluation.long_forward), so
  # lengths reach 1,048,576 tokens on one GPU; 0 = never.
  long_forward_min_tokens: int = 32768
  perplexity: PerplexitySpec = PerplexitySpec()
  copy: CopySpec = CopySpec()
  passkey: PasskeySpec = PasskeySpec()
  recall: RecallSpec = RecallSpec()
  attention: AttentionSpec = AttentionSpec()

  def __post_init__(self):
    """Validates the shared options, naming the field."""
    _put(self, evaluations=_names("evaluations", self.evaluations, EVALUATION_NAMES))
    if self.scaling not in SCALINGS:
      _fail("scaling", self.scaling, f"one of {SCALINGS}")
    if not (self.scaling_factor == 0 or self.scaling_factor >= 1):
      _fail("scaling_factor", self.scaling_factor, "0 (= T/L) or >= 1")
    _positive_int("batch_tokens", self.batch_tokens)
    _positive_int("logits_chunk", self.logits_chunk)
    _positive_int("step", self.step, minimum=-1)
    _positive_int("long_forward_min_tokens", self.long_forward_min_tokens, minimum=0)

  @classmethod
  def from_mapping(cls, mapping: Any) -> EvalConfig:
    """Builds an EvalConfig from a dict or ConfigDict with one sub-dict per evaluation."""
    fields = dict(mapping.to_dict() if hasattr(mapping, "to_dict") else mapping)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
      raise ValueError(f"unknown config.eval field(s) {unknown}")
    for name, spec in SPECS.items():
      if name in fields:
        sub = dict(fields[name])
        spec_fields = {f.name for f in dataclasses.fields(spec)}
        bad = sorted(set(sub) - spec_fields)
        if bad:
          raise ValueError(
            f"unknown config.eval.{name} field(s) {bad}; known: {sorted(spec_fields)}"
          )
        fields[name] = spec(**sub)
    return cls(**fields)
