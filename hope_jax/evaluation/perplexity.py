"""Perplexity versus evaluation length, with the loss by position inside each window."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from hope_jax._durations import format_duration
from hope_jax.data import batches
from hope_jax.evaluation.context import EvalContext, batched_nll, num_selected, select_windows


def bucket_means(values: np.ndarray, num_buckets: int) -> list[dict[str, float]]:
  """Averages [N, T] values over N and over num_buckets equal position ranges of T."""
  length = values.shape[1]
  edges = np.linspace(0, length, min(num_buckets, length) + 1).round().astype(int)
  return [
    {"start": int(a), "end": int(b), "nll": float(values[:, a:b].mean())}
    for a, b in zip(edges[:-1], edges[1:])
    if b > a
  ]


def eval_perplexity(ctx: EvalContext) -> dict[str, Any]:
  """Perplexity versus length over non-overlapping windows of validation documents ≥ T tokens.

  A window of T tokens is one forward pass scored on its T - 1 next-token predictions; windows
  never cross a document end.  ``position_buckets`` gives the mean NLL of equal position ranges.
  """
  e = ctx.config.perplexity
  lengths = [int(multiple * ctx.train_length) for multiple in e.lengths]
  # Tokens each length will run, for the ETA: the windows that exist, at most max_windows.
  planned = [
    n * num_selected(int(batches.windows_per_document(ctx.split, length=n).sum()), e.max_windows)
    for n in lengths
  ]
  results, started, done = [], time.perf_counter(), 0
  for index, (multiple, length) in enumerate(zip(e.lengths, lengths)):
    windows = batches.eval_windows(ctx.split, length=length)
    if windows.num_windows == 0:
      ctx.log(f"perplexity: no validation document has {length} tokens; skipped")
      continue
    chosen = select_windows(windows, e.max_windows)
    start = time.perf_counter()
    nll = batched_nll(
      ctx.nll_fn(length),
      windows.tokens[chosen],
      batch_size=ctx.batch_rows(length),
      batch_divisor=ctx.batch_divisor,
    )
    mean = float(nll.mean())
    results.append(
      {
        "length": length,
        "multiple": float(multiple),
        "nll": mean,
        "perplexity": float(math.exp(mean)),
        "windows": int(chosen.size),
        "tokens": int(nll.size),
        "documents": int(np.unique(windows.document_index[chosen]).size),
        "available_windows": windows.num_windows,
        "scaling_factor": ctx.scaling_factor(length),
        "long_forward": ctx.uses_long_forward(length),
        "position_buckets": bucket_means(nll, e.position_buckets),
        "seconds": time.perf_counter() - start,
      }
    )
    done += planned[index]
    left = sum(planned[index + 1 :])
    pace = (time.perf_counter() - started) / max(done, 1)
    eta = f"; ETA {format_duration(pace * left)} at this pace" if left else ""
    ctx.log(
      f"perplexity @ {length}: {math.exp(mean):.3f} over {chosen.size} windows "
      f"({nll.size:,} tokens{eta})"
    )
  return {"results": results}
