"""Merges evaluation results of several runs into markdown and CSV tables and plots.

Each run directory holds ``eval/perplexity.json`` (written by :mod:`hope_jax.evaluation.runner`):
``{"run": {"encoder", "label", "scaling", "scaling_factor", "seed", "train_length", ...},
"results": [{"length", "multiple", "nll", "perplexity", "windows", "tokens", ...}, ...]}``
and optionally ``eval/summary.json`` with scalar probe metrics ``{"run": ..., "metrics": {...},
"counts": {...}}``; evaluations with inference-time scaling live in ``eval_<scaling>*/`` beside
``eval/`` and are read too (a directory given may also be an eval directory itself).  Runs that
differ only by seed are merged into one row with mean ± standard deviation (ddof 1).  Probe metric
names ``family@var=value`` become one table per family, columns = values of ``var``.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from hope_jax.evaluation import plots


def run_label(run: dict[str, Any]) -> str:
  """Returns the row label of a run: its label (or encoder) and any inference-time scaling."""
  label = run.get("label") or run.get("encoder", "?")
  if run.get("scaling", "none") != "none":
    factor = run.get("scaling_factor") or 0
    label += f" + {run['scaling']}" + (f"×{factor:g}" if factor else " (×T/L)")
  if run.get("logn_scaling"):
    label += " + log-n"
  return label


# Run metadata that defines the trained model: runs that differ in any never share a row.
MODEL_FIELDS: tuple[str, ...] = (
  "encoder",
  "encoder_params",
  "train_length",
  "head_dim",
  "num_params",
)


def check_same_model(label: str, members: list[dict]) -> None:
  """Raises ValueError when results grouped under one row label come from different models."""
  for field in MODEL_FIELDS:
    values = {json.dumps(m["run"].get(field), sort_keys=True) for m in members}
    if len(values) > 1:
      raise ValueError(
        f"runs labelled {label!r} differ in {field} ({', '.join(sorted(values))}): "
        f"they are different models and cannot share a row; table them apart"
      )


def result_files(run_dirs: Sequence[str], name: str = "perplexity.json") -> list[str]:
  """Paths of DIR/<name> (DIR an eval dir), else of DIR/eval*/<name>, for every DIR; no repeats."""
  paths: list[str] = []
  for run_dir in run_dirs:
    direct = os.path.join(run_dir, name)
    found = (
      [direct]
      if os.path.exists(direct)
      else sorted(glob.glob(os.path.join(glob.escape(run_dir), "eval*", name)))
    )
    paths += [p for p in found if os.path.realpath(p) not in map(os.path.realpath, paths)]
  return paths


def load_results(run_dirs: Sequence[str], name: str = "perplexity.json") -> list[dict]:
  """Loads every <name> that result_files finds for the run directories."""
  loaded = []
  for path in result_files(run_dirs, name):
    with open(path, encoding="utf-8") as f:
      loaded.append(json.load(f))
  return loaded


def _mean_spread(values: list[float]) -> tuple[float, float]:
  values = [v for v in values if v is not None and math.isfinite(v)]
  if not values:
    return float("nan"), float("nan")
  return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def _fmt(mean: float, spread: float, count: int) -> str:
  if not math.isfinite(mean):
    return "—"
  text = f"{mean:.2f}" if mean < 1e4 else f"{mean:.3g}"
  return text + (f" ± {spread:.2f}" if count > 1 else "")


def perplexity_rows(results: list[dict]) -> tuple[list[int], int, list[dict]]:
  """Groups perplexity results by label: returns (lengths, train_length, rows)."""
  groups: OrderedDict[str, list[dict]] = OrderedDict()
  for result in results:
    groups.setdefault(run_label(result["run"]), []).append(result)
  lengths = sorted({r["length"] for result in results for r in result["results"]})
  train_lengths = {result["run"].get("train_length") for result in results}
  train_length = train_lengths.pop() if len(train_lengths) == 1 else 0
  rows = []
  for label, members in groups.items():
    check_same_model(label, members)
    seeds = sorted({m["run"].get("seed", 0) for m in members})
    row: dict[str, Any] = {"label": label, "seeds": seeds, "cells": {}}
    for length in lengths:
      entries = [r for m in members for r in m["results"] if r["length"] == length]
      mean, spread = _mean_spread([e["perplexity"] for e in entries])
      per_run = max(len(entries), 1)
      row["cells"][length] = {
        "mean": mean,
        "spread": spread,
        "count": len(entries),
        "tokens": int(sum(e["tokens"] for e in entries) / per_run),
        "windows": int(sum(e["windows"] for e in entries) / per_run),
      }
    rows.append(row)
  return lengths, train_length, rows


def _spread_text(values: list[int]) -> str:
  """One count, or min–max when rows differ."""
  values = sorted(set(values))
  if not values:
    return ""
  return f"{values[0]:,}" if len(values) == 1 else f"{values[0]:,}–{values[-1]:,}"


def perplexity_markdown(lengths: list[int], train_length: int, rows: list[dict]) -> str:
  """Renders the perplexity table: rows = runs, columns = lengths, training length marked."""
  header = ["run", "seeds"] + [f"**{n:,} (L)**" if n == train_length else f"{n:,}" for n in lengths]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  for row in rows:
    cells = [_fmt(c["mean"], c["spread"], c["count"]) for c in row["cells"].values()]
    lines.append("| " + " | ".join([row["label"], str(len(row["seeds"]))] + cells) + " |")
  tokens = ["tokens (windows) per run", ""] + [
    f"{_spread_text([r['cells'][n]['tokens'] for r in rows if r['cells'][n]['count']])} "
    f"({_spread_text([r['cells'][n]['windows'] for r in rows if r['cells'][n]['count']])})"
    for n in lengths
  ]
  lines.append("| " + " | ".join(tokens) + " |")
  return "\n".join(lines)


def write_perplexity_csv(path: str, lengths: list[int], rows: list[dict]) -> None:
  """Writes one line per (run, length): mean, spread, seeds, windows, tokens."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(
      ["run", "length", "perplexity_mean", "perplexity_spread", "seeds", "windows", "tokens"]
    )
    for row in rows:
      for n in lengths:
        c = row["cells"][n]
        writer.writerow(
          [
            row["label"],
            n,
            f"{c['mean']:.6g}",
            f"{c['spread']:.6g}",
            c["count"],
            c["windows"],
            c["tokens"],
          ]
        )


METRIC_NAME = re.compile(r"^(?P<family>[^@]+)@(?P<var>[^=]+)=(?P<value>.+)$")


def _number(text: str) -> float:
  try:
    return float(text)
  except ValueError:
    return math.nan


def _name_value(name: str, default: float) -> float:
  """The number after ``=`` in a metric name ``family@var=value``; ``default`` for other names."""
  match = METRIC_NAME.match(name)
  return _number(match["value"]) if match else default


def metric_groups(
  summaries: list[dict],
) -> tuple[list[str], OrderedDict[str, list[dict]], dict[str, list[str]]]:
  """Returns (row labels, summaries by label, metric names by family sorted by their value).

  A name ``family@var=value`` joins family ``family@var``; a plain name joins family "overall".
  """
  groups: OrderedDict[str, list[dict]] = OrderedDict()
  for summary in summaries:
    groups.setdefault(run_label(summary["run"]), []).append(summary)
  for label, members in groups.items():
    check_same_model(label, members)
  families: dict[str, list[str]] = {}
  for name in sorted({k for members in groups.values() for m in members for k in m["metrics"]}):
    match = METRIC_NAME.match(name)
    family = f"{match['family']}@{match['var']}" if match else "overall"
    families.setdefault(family, []).append(name)
  for names in families.values():
    names.sort(key=lambda n: (_name_value(n, 0.0), n))
  return list(groups), groups, dict(sorted(families.items(), key=lambda kv: kv[0] != "overall"))


def _metric_cell(members: list[dict], name: str) -> dict[str, Any]:
  values = [m["metrics"][name] for m in members if name in m["metrics"]]
  mean, spread = _mean_spread(values)
  counts = [m.get("counts", {}).get(name) for m in members if name in m["metrics"]]
  return {
    "mean": mean,
    "spread": spread,
    "count": len(values),
    "examples": int(np.mean([c for c in counts if c is not None]))
    if any(c is not None for c in counts)
    else None,
  }


def _column_title(name: str, train_length: int | None) -> str:
  """ "var=value" of a metric name, in bold and marked (L) where var T equals the training length."""
  match = METRIC_NAME.match(name)
  if not match:
    return name
  text = f"{match['var']}={match['value']}"
  is_l = match["var"] == "T" and _number(match["value"]) == train_length
  return f"**{text} (L)**" if is_l else text


def summary_markdown(summaries: list[dict]) -> str:
  """Renders probe metrics (eval/summary.json): a table per family, rows = runs, mean ± spread.

  Columns are the family's variable values (``T`` equal to the training length in bold); a row
  counts as seeds only the runs that measured the family, and runs that measured none of it have
  no row.  The last line gives the examples (or scored tokens) behind each cell.
  """
  labels, groups, families = metric_groups(summaries)
  train_lengths = {s["run"].get("train_length") for s in summaries}
  train_length = train_lengths.pop() if len(train_lengths) == 1 else None
  parts = []
  for family, names in families.items():
    header = ["run", "seeds"] + [_column_title(n, train_length) for n in names]
    lines = [f"**{family}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    examples: dict[str, list[int]] = {n: [] for n in names}
    for label in labels:
      # Seeds are the runs that measured this family; runs that measured none of it are left out.
      members = [m for m in groups[label] if any(n in m["metrics"] for n in names)]
      if not members:
        continue
      cells = []
      for name in names:
        cell = _metric_cell(members, name)
        cells.append(_fmt(cell["mean"], cell["spread"], cell["count"]))
        if cell["examples"] is not None:
          examples[name].append(cell["examples"])
      seeds = len({m["run"].get("seed", 0) for m in members})
      lines.append("| " + " | ".join([label, str(seeds)] + cells) + " |")
    lines.append(
      "| "
      + " | ".join(["examples per run", ""] + [_spread_text(examples[n]) for n in names])
      + " |"
    )
    parts.append("\n".join(lines))
  return "\n\n".join(parts)


def write_summary_csv(path: str, summaries: list[dict]) -> None:
  """Writes one line per (run, metric): mean, spread, seeds, examples."""
  labels, groups, families = metric_groups(summaries)
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["run", "metric", "mean", "spread", "seeds", "examples"])
    for label in labels:
      for names in families.values():
        for name in names:
          cell = _metric_cell(groups[label], name)
          if cell["count"]:
            writer.writerow(
              [
                label,
                name,
                f"{cell['mean']:.6g}",
                f"{cell['spread']:.6g}",
                cell["count"],
                cell["examples"] if cell["examples"] is not None else "",
              ]
            )


def plot_summary(path: str, summaries: list[dict]) -> bool:
  """Writes a panel per numeric metric family (x = the variable); False when there is none."""
  labels, groups, families = metric_groups(summaries)
  panels: dict[str, dict[str, tuple[list, list, list]]] = {}
  for family, names in families.items():
    xs = [_name_value(n, math.nan) for n in names]
    if family == "overall" or not all(math.isfinite(x) for x in xs):
      continue
    panels[family] = {}
    for label in labels:
      cells = [_metric_cell(groups[label], n) for n in names]
      kept = [(x, c) for x, c in zip(xs, cells) if c["count"]]
      panels[family][label] = (
        [x for x, _ in kept],
        [c["mean"] for _, c in kept],
        [c["spread"] for _, c in kept],
      )
  if not panels:
    return False
  train_lengths = {s["run"].get("train_length") for s in summaries}
  plots.metric_panels(path, panels, marker=train_lengths.pop() if len(train_lengths) == 1 else None)
  return True


def write_tables(run_dirs: Sequence[str], out: str) -> str:
  """Writes OUT (markdown) and its siblings: .csv/.png (perplexity), _positions.png (loss by
  position), _probes.csv/_probes.png."""
  results = load_results(run_dirs)
  summaries = load_results(run_dirs, "summary.json")
  if not results and not summaries:
    raise FileNotFoundError(
      f"no eval/perplexity.json or eval/summary.json in any of {list(run_dirs)}"
    )
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  stem = os.path.splitext(out)[0]
  parts = []
  if results:
    lengths, train_length, rows = perplexity_rows(results)
    parts += [
      "## Perplexity versus evaluation length",
      f"Training length L = {train_length:,} (bold). Mean ± standard deviation over "
      "seeds; the last line gives the tokens (windows) behind each cell of one run.",
      "",
      perplexity_markdown(lengths, train_length, rows),
    ]
    write_perplexity_csv(stem + ".csv", lengths, rows)
    plots.plot_perplexity(stem + ".png", lengths, train_length, rows)
    plots.plot_position_loss(stem + "_positions.png", results, label_of=run_label)
  if summaries:
    parts += [
      "",
      "## Probe metrics",
      "Accuracy in [0, 1], mean ± standard deviation over seeds.",
      "",
      summary_markdown(summaries),
    ]
    write_summary_csv(stem + "_probes.csv", summaries)
    plot_summary(stem + "_probes.png", summaries)
  markdown = "\n".join(parts).lstrip("\n") + "\n"
  with open(out, "w", encoding="utf-8") as f:
    f.write(markdown)
  return markdown
