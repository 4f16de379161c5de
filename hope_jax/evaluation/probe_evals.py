"""Probe evaluations: copy, passkey retrieval and associative recall under greedy decoding.

Every probe (:mod:`hope_jax.evaluation.probes`) is scored by teacher-forced greedy argmax: one forward pass
over the whole sequence, the model's argmax at each scored position compared with the true token.
For an all-or-nothing target (a passkey, a recalled value, a copied segment) this is exactly greedy
decoding: if every argmax matches, greedy decoding would have produced the same tokens; at the
first mismatch both fail.  Passkey scoring also reads the argmax right after the key
(:func:`hope_jax.evaluation.probes.score_passkey` rejects an extra digit), so it is the greedy decoding of
``len(key) + 1`` tokens.  Each evaluation returns its grid (``results``), cells that could not be
built (``skipped``: a length too short for the passkey text, a distance below the
demonstrations' span) and scalar ``metrics``/``counts`` for ``eval/summary.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hope_jax.data.batches import TokenizedSplit
from hope_jax.evaluation import context as evaluate
from hope_jax.evaluation import plots, probes, recall_probes

# (tokens [N, T], evaluation length) -> greedy predictions aligned with tokens (column 0 unused).
Predict = Callable[[np.ndarray, int], np.ndarray]


def span_accuracy(hits: np.ndarray, mask: np.ndarray) -> float:
  """Fraction of maximal runs of True in mask [N, T] whose positions are all hits (NaN if none)."""
  mask = np.asarray(mask, bool)
  starts = mask & ~np.pad(mask, ((0, 0), (1, 0)))[:, :-1]
  if not starts.any():
    return float("nan")
  run_ids = (np.cumsum(starts.ravel()) - 1)[mask.ravel()]
  misses = np.bincount(
    run_ids, weights=~np.asarray(hits, bool).ravel()[mask.ravel()], minlength=int(starts.sum())
  )
  return float(np.mean(misses == 0))


def score_examples(
  predict: Predict, examples: probes.ProbeExamples, *, length: int | None = None
) -> dict[str, float]:
  """Token accuracy and whole-span accuracy of greedy predictions on a probe's scored positions."""
  predicted = predict(examples.tokens, length or examples.tokens.shape[1])
  hits = (predicted == examples.tokens) & examples.target_mask
  return {
    "token_accuracy": float(hits.sum() / max(examples.num_targets, 1)),
    "span_accuracy": span_accuracy(hits, examples.target_mask),
    "examples": int(examples.tokens.shape[0]),
    "targets": examples.num_targets,
    "length": int(length or examples.tokens.shape[1]),
  }


def _multiples(values: Sequence[float], train_length: int, field: str) -> list[tuple[float, int]]:
  """(multiple, tokens) pairs of non-negative multiples of L; raises naming the field."""
  if any(v < 0 for v in values):
    raise ValueError(f"config.eval.{field} must be non-negative multiples of L, got {values!r}")
  return [(float(v), int(round(v * train_length))) for v in values]


def _mean(values: list[float]) -> float:
  values = [v for v in values if np.isfinite(v)]
  return float(np.mean(values)) if values else float("nan")


# ----------------------------------------------------------------------------------------------
# Copy.

# Random ids among those seen at least this often in the evaluated split (copy's random_seen).
SEEN_MIN_COUNT = 16


def _seen_ids(ctx: evaluate.EvalContext) -> np.ndarray:
  return probes.seen_token_ids(ctx.split, min_count=SEEN_MIN_COUNT)


COPY_SOURCES: dict[str, Callable[[evaluate.EvalContext], TokenizedSplit | np.ndarray | str]] = {
  "text": lambda ctx: ctx.split,
  "random": lambda ctx: "random",
  "random_seen": _seen_ids,
}


def copy_accuracy(
  predict: Predict,
  sources: Mapping[str, TokenizedSplit | np.ndarray | str],
  *,
  gaps: Sequence[tuple[float, int]],
  segment_length: int,
  num_examples: int,
  seed: int,
  vocab_size: int,
) -> dict[str, Any]:
  """Greedy accuracy on the second copy of a segment versus the gap (and so the total length)."""
  results, metrics, counts = [], {}, {}
  for name, source in sources.items():
    for multiple, gap in gaps:
      examples = probes.copy_examples(
        seed=seed,
        num_examples=num_examples,
        segment_length=segment_length,
        gap=gap,
        source=source,
        vocab_size=vocab_size,
      )
      score = score_examples(predict, examples)
      results.append(
        {
          "source": name,
          "gap": gap,
          "gap_multiple": multiple,
          "segment_length": segment_length,
          "accuracy": score["token_accuracy"],
          "exact_match": score["span_accuracy"],
          **score,
        }
      )
      metrics[f"copy_{name}_acc@gap={gap}"] = score["token_accuracy"]
      counts[f"copy_{name}_acc@gap={gap}"] = score["targets"]
  return {"results": results, "metrics": metrics, "counts": counts}


def eval_copy(ctx: evaluate.EvalContext) -> dict[str, Any]:
  """Copy accuracy versus gap for each of eval.copy.sources."""
  e = ctx.config.copy
  out = copy_accuracy(
    ctx.predict_tokens,
    {s: COPY_SOURCES[s](ctx) for s in e.sources},
    gaps=_multiples(e.gaps, ctx.train_length, "copy.gaps"),
    segment_length=e.segment_length,
    num_examples=e.examples,
    seed=ctx.config.probe_seed,
    vocab_size=ctx.tokenizer.vocab_size,
  )
  for r in out["results"]:
    ctx.log(f"copy {r['source']} gap {r['gap']} (T = {r['length']}): {r['accuracy']:.3f}")
  return out


# ----------------------------------------------------------------------------------------------
# Passkey retrieval.


def passkey_accuracy(
  predict: Predict,
  tokenizer: probes.TextTokenizer,
  *,
  lengths: Sequence[tuple[float, int]],
  depths: Sequence[float],
  keys: int,
  seed: int,
) -> dict[str, Any]:
  """Passkey accuracy over lengths × depths, ``keys`` random keys per cell (exact greedy key)."""
  results: list[dict[str, Any]] = []
  skipped, metrics, counts = [], {}, {}
  next_seed = seed * 1_000_003
  for multiple, length in lengths:
    try:
      cells = [
        (
          depth,
          [
            probes.passkey_example(
              tokenizer, length=length, depth=depth, seed=next_seed + i * keys + k
            )
            for k in range(keys)
          ],
        )
        for i, depth in enumerate(depths)
      ]
    except ValueError as error:  # the passkey text does not fit this length
      skipped.append({"length": length, "reason": str(error)})
      continue
    next_seed += len(depths) * keys
    examples = [e for _, cell in cells for e in cell]
    # One pad column more, so the prediction right after a key that ends the sequence exists;
    # the model still reads `length` tokens.
    tokens = np.stack([np.append(e.tokens, tokenizer.pad_id) for e in examples])
    predicted = iter(predict(tokens, length))
    accuracies = []
    for depth, cell in cells:
      correct, digits = [], []
      for example, row in zip(cell, predicted):
        n, start = len(example.answer_ids), example.answer_start
        correct.append(probes.score_passkey(row[start : start + n + 1], example))
        digits.append(float(np.mean(row[start : start + n] == example.answer_ids)))
      accuracies.append(float(np.mean(correct)))
      results.append(
        {
          "length": length,
          "multiple": multiple,
          "depth": float(depth),
          "keys": [e.key for e in cell],
          "accuracy": accuracies[-1],
          "digit_accuracy": float(np.mean(digits)),
          "examples": len(cell),
        }
      )
    metrics[f"passkey_acc@T={length}"] = float(np.mean(accuracies))
    counts[f"passkey_acc@T={length}"] = len(examples)
  if results:
    metrics["passkey_acc"] = float(np.mean([r["accuracy"] for r in results]))
    counts["passkey_acc"] = sum(r["examples"] for r in results)
  return {"results": results, "skipped": skipped, "metrics": metrics, "counts": counts}


def passkey_grid(results: list[dict]) -> tuple[list[int], list[float], np.ndarray]:
  """Returns (lengths, depths, accuracy [depths, lengths]) of passkey results."""
  lengths = sorted({r["length"] for r in results})
  depths = sorted({r["depth"] for r in results})
  grid = np.full((len(depths), len(lengths)), np.nan)
  for r in results:
    grid[depths.index(r["depth"]), lengths.index(r["length"])] = r["accuracy"]
  return lengths, depths, grid


def eval_passkey(ctx: evaluate.EvalContext) -> dict[str, Any]:
  """Passkey accuracy over eval.passkey.lengths × depths; heat map passkey.png."""
  e = ctx.config.passkey
  out = passkey_accuracy(
    ctx.predict_tokens,
    ctx.tokenizer,
    lengths=_multiples(e.lengths, ctx.train_length, "passkey.lengths"),
    depths=e.depths,
    keys=e.keys,
    seed=ctx.config.probe_seed,
  )
  for s in out["skipped"]:
    ctx.log(f"passkey @ {s['length']}: skipped ({s['reason']})")
  if out["results"]:
    lengths, depths, grid = passkey_grid(out["results"])
    ctx.log(f"passkey accuracy {out['metrics']['passkey_acc']:.3f} over {lengths} × {depths}")
  if out["results"] and ctx.writes_files:
    plots.heatmap(
      f"{ctx.eval_dir}/passkey.png",
      grid,
      x_labels=[f"{n:,}" for n in lengths],
      y_labels=[f"{d:g}" for d in depths],
      x_label="sequence length (tokens)",
      y_label="needle depth",
      value_label="accuracy",
      title=f"Passkey retrieval ({ctx.run_metadata()['label']}, L = {ctx.train_length:,})",
      marked_column=lengths.index(ctx.train_length) if ctx.train_length in lengths else None,
    )
  return out


# ----------------------------------------------------------------------------------------------
# Associative recall.

RECALL_SOURCES: dict[str, Callable[[evaluate.EvalContext], recall_probes.RecallFormat]] = {
  "words": lambda ctx: recall_probes.WordLines(ctx.tokenizer),
  "random": lambda ctx: recall_probes.RandomPairs.over_vocabulary(ctx.tokenizer.vocab_size),
  "code": lambda ctx: recall_probes.CodeLines(ctx.tokenizer, ctx.split),
}


def recall_accuracy(
  predict: Predict,
  sources: Mapping[str, recall_probes.RecallFormat],
  *,
  pairs: Sequence[int],
  distances: Sequence[tuple[float, int]],
  queries: int,
  num_examples: int,
  seed: int,
) -> dict[str, Any]:
  """Query accuracy (all value tokens right) versus demonstrations and distance, per source."""
  results: list[dict[str, Any]] = []
  skipped = []
  for name, source in sources.items():
    for num_pairs in pairs:
      for multiple, distance in distances:
        try:
          examples = recall_probes.associative_recall_examples(
            source,
            seed=seed,
            num_pairs=num_pairs,
            num_queries=min(queries, num_pairs),
            distance=distance,
            num_examples=num_examples,
          )
        except ValueError as error:  # the distance is below the demonstrations' span
          skipped.append(
            {"source": name, "pairs": num_pairs, "distance": distance, "reason": str(error)}
          )
          continue
        score = score_examples(predict, examples)
        results.append(
          {
            "source": name,
            "pairs": num_pairs,
            "distance": distance,
            "distance_multiple": multiple,
            "accuracy": score["span_accuracy"],
            "queries": score["examples"] * min(queries, num_pairs),
            **score,
          }
        )
  metrics, counts = {}, {}
  for name in sources:
    for field, tag in (("distance", "d"), ("pairs", "pairs")):
      for value in sorted({r[field] for r in results if r["source"] == name}):
        cells = [r for r in results if r["source"] == name and r[field] == value]
        metrics[f"recall_{name}_acc@{tag}={value}"] = _mean([r["accuracy"] for r in cells])
        counts[f"recall_{name}_acc@{tag}={value}"] = sum(r["queries"] for r in cells)
  return {"results": results, "skipped": skipped, "metrics": metrics, "counts": counts}


def eval_recall(ctx: evaluate.EvalContext) -> dict[str, Any]:
  """Associative recall over eval.recall.pairs × distances for each of its sources."""
  e = ctx.config.recall
  out = recall_accuracy(
    ctx.predict_tokens,
    {s: RECALL_SOURCES[s](ctx) for s in e.sources},
    pairs=e.pairs,
    distances=_multiples(e.distances, ctx.train_length, "recall.distances"),
    queries=e.queries,
    num_examples=e.examples,
    seed=ctx.config.probe_seed,
  )
  for r in out["results"]:
    ctx.log(
      f"recall {r['source']} pairs {r['pairs']} distance {r['distance']}: {r['accuracy']:.3f}"
    )
  for s in out["skipped"]:
    ctx.log(f"recall {s['source']} pairs {s['pairs']} distance {s['distance']}: skipped")
  return out
