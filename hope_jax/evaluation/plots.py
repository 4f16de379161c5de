"""PNG figures of the evaluation suite (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

CLASS_COLOURS = {"high": "tab:blue", "low": "tab:red", "unrotated": "tab:gray"}
_MARKERS = ("o", "s", "^", "D", "v", "P")
_LINESTYLES = ("-", "--", ":", "-.")


def series_style(index: int) -> dict[str, Any]:
  """Colour, line style and marker of the index-th line: no two of the first 40 look alike."""
  return {
    "color": f"C{index % 10}",
    "linestyle": _LINESTYLES[index // 10 % len(_LINESTYLES)],
    "marker": _MARKERS[index // 10 % len(_MARKERS)],
  }


def format_length(tokens: float) -> str:
  """A token count as people say it: 512, 1k, 1.5k, 32k, 1M."""
  for unit, size in (("M", 1 << 20), ("k", 1 << 10)):
    if tokens >= size:
      return f"{tokens / size:.3g}{unit}"
  return f"{tokens:.4g}"


def length_axis(ax, lengths: Sequence[float] | None = None, *, axis: str = "x") -> None:
  """Makes an axis of token counts log-2 with ticks 512, 1k, 2k… (at lengths, if given), no minor."""
  ticker = matplotlib_ticker()
  which = ax.xaxis if axis == "x" else ax.yaxis
  (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=2)
  if lengths is not None:
    which.set_major_locator(ticker.FixedLocator(sorted(set(lengths))))
  which.set_major_formatter(ticker.FuncFormatter(lambda value, _: format_length(value)))
  which.set_minor_locator(ticker.NullLocator())


def log_value_axis(ax) -> None:
  """Makes the y axis logarithmic with plain labels (20, 50, 100) and unlabelled minor ticks."""
  ticker = matplotlib_ticker()
  ax.set_yscale("log")
  ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
  ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def mark_training_length(ax, train_length: float | None) -> None:
  """Draws the training length L as a labelled dashed vertical line."""
  if train_length:
    ax.axvline(
      train_length,
      color="gray",
      linestyle="--",
      linewidth=1,
      label=f"training length L = {format_length(train_length)}",
    )


def mean_with_band(
  ax,
  xs: Sequence[float],
  means: Sequence[float],
  spreads: Sequence[float],
  *,
  label: str,
  index: int,
) -> None:
  """Plots one run's means as a line and, where seeds give a spread, a shaded ±spread band."""
  style = series_style(index)
  ax.plot(xs, means, markersize=4, label=label, **style)
  if any(spreads):
    low = np.asarray(means, np.float64) - np.asarray(spreads, np.float64)
    high = np.asarray(means, np.float64) + np.asarray(spreads, np.float64)
    ax.fill_between(xs, low, high, color=style["color"], alpha=0.15, linewidth=0)


def figure_legend(fig, axes: Sequence[Any]) -> None:
  """One legend for the whole figure, below the panels, with each label once."""
  entries: dict[str, Any] = {}
  for ax in axes:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      entries.setdefault(label, handle)
  if entries:
    fig.legend(
      list(entries.values()),
      list(entries),
      loc="lower center",
      fontsize=7,
      ncol=min(len(entries), 4),
      frameon=False,
    )
    fig.subplots_adjust(bottom=0.1 + 0.04 * math.ceil(len(entries) / 4))


def pyplot():
  """Returns matplotlib.pyplot on the Agg (file-only) backend, imported on first use."""
  import matplotlib  # pylint: disable=import-outside-toplevel

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  return plt


def matplotlib_ticker():
  """Returns matplotlib.ticker (after the Agg backend is chosen)."""
  pyplot()
  import matplotlib.ticker  # pylint: disable=import-outside-toplevel

  return matplotlib.ticker


def save_figure(fig, path: str) -> None:
  """Lays out fig (leaving room for a figure legend), writes it to path and closes it."""
  legend_height = 0.04 * (1 + len(fig.legends[0].get_texts()) // 4) + 0.02 if fig.legends else 0
  fig.tight_layout(rect=(0, legend_height, 1, 1))
  fig.savefig(path)
  pyplot().close(fig)


def heatmap(
  path: str,
  values: np.ndarray,
  *,
  x_labels: Sequence[str],
  y_labels: Sequence[str],
  x_label: str,
  y_label: str,
  value_label: str,
  title: str,
  marked_column: int | None = None,
) -> None:
  """Writes an annotated [rows, columns] heat map in [0, 1] (NaN cells blank)."""
  plt = pyplot()
  values = np.asarray(values, np.float64)
  fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(x_labels), 1.4 + 0.5 * len(y_labels)), dpi=120)
  image = ax.imshow(
    np.ma.masked_invalid(values), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto", origin="upper"
  )
  for (row, col), value in np.ndenumerate(values):
    if math.isfinite(value):
      ax.text(
        col,
        row,
        f"{value:.2f}",
        ha="center",
        va="center",
        fontsize=8,
        color="white" if value < 0.5 else "black",
      )
  ax.set_xticks(range(len(x_labels)), x_labels)
  ax.set_yticks(range(len(y_labels)), y_labels)
  if marked_column is not None:
    ax.axvline(marked_column, color="red", linewidth=2, alpha=0.6, label="training length")
    ax.legend(fontsize=7, loc="upper right")
  ax.set_xlabel(x_label)
  ax.set_ylabel(y_label)
  ax.set_title(title, fontsize=9)
  fig.colorbar(image, ax=ax, label=value_label)
  save_figure(fig, path)


def distance_curves(
  path: str,
  distances: Sequence[float],
  curves: Mapping[str, Sequence[float]],
  *,
  y_label: str,
  title: str,
  marker: float | None = None,
) -> None:
  """Writes curves versus relative distance on symmetric-log x and log y axes."""
  plt = pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
  for index, (label, ys) in enumerate(curves.items()):
    ax.plot(distances, ys, markersize=3, label=label, **series_style(index))
  if marker:
    ax.axvline(marker, color="gray", linestyle="--", linewidth=1, label="training length")
  ax.set_xscale("symlog", linthresh=1.0)
  ax.set_xlim(left=0)
  positive = [y for ys in curves.values() for y in ys if y > 0]
  if positive and max(positive) / min(positive) > 10:
    log_value_axis(ax)
  ax.set_xlabel("relative distance n − m (tokens)")
  ax.set_ylabel(y_label)
  ax.set_title(title, fontsize=9)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=7)
  save_figure(fig, path)


def band_panels(
  path: str, result: Mapping[str, Any], *, centers: Sequence[float], title: str, max_layers: int = 6
) -> None:
  """Writes, per layer, a band × distance heat map of mean contributions and per-band q/k norms."""
  plt = pyplot()
  layers = result["layers"]
  shown = sorted(
    {int(round(i)) for i in np.linspace(0, len(layers) - 1, min(max_layers, len(layers)))}
  )
  classes = result["band_classes"]
  fig, axes = plt.subplots(
    len(shown), 2, figsize=(11, 2.6 * len(shown) + 0.6), dpi=110, squeeze=False
  )
  for row, index in enumerate(shown):
    layer = layers[index]
    grid = np.asarray(layer["band_contribution"])  # [bands, buckets]
    limit = float(np.nanmax(np.abs(grid))) or 1.0
    ax = axes[row, 0]
    image = ax.imshow(
      grid,
      aspect="auto",
      cmap="RdBu_r",
      vmin=-limit,
      vmax=limit,
      origin="lower",
      interpolation="nearest",
    )
    ticks = range(0, len(centers), max(1, len(centers) // 6))
    ax.set_xticks(list(ticks), [f"{centers[i]:.0f}" for i in ticks])
    ax.set_yticks(range(0, len(classes), max(1, len(classes) // 8)))
    ax.set_ylabel(f"layer {index}: band i")
    ax.set_xlabel("relative distance (bucket centre)")
    fig.colorbar(image, ax=ax, label="mean q·k contribution")
    ax = axes[row, 1]
    bands = np.arange(len(classes))
    colours = [CLASS_COLOURS[c] for c in classes]
    ax.bar(bands - 0.2, layer["q_norm"], width=0.4, color=colours, alpha=0.9, label="|q⁽ⁱ⁾|")
    ax.bar(bands + 0.2, layer["k_norm"], width=0.4, color=colours, alpha=0.45, label="|k⁽ⁱ⁾|")
    ax.plot(
      bands,
      layer["band_mean_abs"],
      color="black",
      marker=".",
      linewidth=1,
      label="mean |contribution|",
    )
    ax.set_xlabel("band i (fast → slow); blue ≥ 1 period in L, red < 1, gray unrotated")
    ax.set_ylabel("RMS norm")
    ax.legend(fontsize=7)
  fig.suptitle(title, fontsize=9)
  save_figure(fig, path)


# What a metric family's variable (the name after "@") is, as an axis label; "tokens" ones are lengths.
VARIABLE_LABELS = {
  "T": "window length (tokens)",
  "gap": "gap (tokens)",
  "d": "distance (tokens)",
  "pairs": "key-value pairs",
}
TOKEN_VARIABLES = ("T", "gap", "d")


def panel_title(family: str) -> str:
  """A metric family as a title: "copy_random_acc@gap" -> "Copy, random tokens: accuracy by gap"."""
  name, _, variable = family.partition("@")
  probe, _, rest = name.removesuffix("_acc").partition("_")
  source = {"random": "random tokens"}.get(rest, rest)
  by = {"T": "length", "d": "distance"}.get(variable, variable)
  return (
    f"{probe.capitalize()}{', ' + source if source else ''}: accuracy{' by ' + by if by else ''}"
  )


def metric_panels(
  path: str,
  panels: Mapping[str, Mapping[str, tuple[list, list, list]]],
  *,
  marker: float | None = None,
) -> None:
  """Writes one panel per metric family: each run's mean (x = the variable) with a seed band.

  The runs share one legend for the whole figure; variables that are token counts get the log-2
  length axis (512, 1k, 2k…), and the training length is marked where the variable is a length.
  """
  plt = pyplot()
  names = list(panels)
  cols = min(3, len(names))
  rows = -(-len(names) // cols)
  fig, axes = plt.subplots(
    rows, cols, figsize=(4.6 * cols, 3.4 * rows + 0.8), dpi=110, squeeze=False
  )
  shown = list(axes.ravel()[: len(names)])
  for ax, name in zip(shown, names):
    xs_all = []
    for index, (label, (xs, means, spreads)) in enumerate(panels[name].items()):
      mean_with_band(ax, xs, means, spreads, label=label, index=index)
      xs_all += list(xs)
    positive = [x for x in xs_all if x > 0]
    variable = name.partition("@")[2]
    if positive and min(xs_all) > 0 and max(positive) / min(positive) >= 4:
      length_axis(ax, xs_all)
    elif positive and max(positive) / min(positive) >= 4:  # a 0 among them (a gap): symlog
      ticker = matplotlib_ticker()
      ax.set_xscale("symlog", linthresh=min(positive))
      ax.xaxis.set_major_locator(ticker.FixedLocator(sorted(set(xs_all))))
      ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: format_length(value)))
      ax.xaxis.set_minor_locator(ticker.NullLocator())
    if variable in TOKEN_VARIABLES:
      mark_training_length(ax, marker)
    ax.set_title(panel_title(name), fontsize=9)
    ax.set_xlabel(VARIABLE_LABELS.get(variable, variable), fontsize=8)
    ax.set_ylabel("accuracy", fontsize=8)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(True, alpha=0.3)
  for ax in axes.ravel()[len(names) :]:
    ax.set_visible(False)
  figure_legend(fig, shown)
  save_figure(fig, path)


def plot_perplexity(
  path: str,
  lengths: list[int],
  train_length: int,
  rows: list[dict],
  *,
  title: str = "Perplexity versus evaluation length",
) -> None:
  """Writes a log-x line plot of perplexity versus length for every run."""
  fig, ax = pyplot().subplots(figsize=(7, 4.5), dpi=120)
  for index, row in enumerate(rows):
    xs = [n for n in lengths if math.isfinite(row["cells"][n]["mean"])]
    mean_with_band(
      ax,
      xs,
      [row["cells"][n]["mean"] for n in xs],
      [row["cells"][n]["spread"] for n in xs],
      label=row["label"],
      index=index,
    )
  mark_training_length(ax, train_length)
  length_axis(ax, lengths)
  finite = [c["mean"] for row in rows for c in row["cells"].values() if math.isfinite(c["mean"])]
  if finite and max(finite) / min(finite) > 10:  # log only where the range calls for it
    log_value_axis(ax)
  ax.set_xlabel("evaluation length (tokens)")
  ax.set_ylabel("perplexity")
  ax.set_title(title)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  save_figure(fig, path)


def plot_position_loss(
  path: str, results: list[dict], *, label_of: Callable[[dict[str, Any]], str]
) -> bool:
  """Plots mean NLL versus position inside the window at the longest length most runs reach."""
  counts: dict[int, int] = {}
  for result in results:
    for r in result["results"]:
      counts[r["length"]] = counts.get(r["length"], 0) + 1
  if not counts:
    return False
  length = max(n for n, c in counts.items() if c * 2 >= len(results))
  fig, ax = pyplot().subplots(figsize=(7, 4.5), dpi=120)
  seen = set()
  for result in results:
    label = label_of(result["run"])
    entry = next((r for r in result["results"] if r["length"] == length), None)
    if entry is None or label in seen or not entry.get("position_buckets"):
      continue
    seen.add(label)  # the first seed of each run
    buckets = entry["position_buckets"]
    ax.plot(
      [(b["start"] + b["end"]) / 2 for b in buckets],
      [b["nll"] for b in buckets],
      label=label,
      **series_style(len(seen) - 1),
    )
  mark_training_length(ax, results[0]["run"].get("train_length"))
  length_axis(ax)
  ax.set_xlabel("position inside the window (tokens, bucket centre)")
  ax.set_ylabel("mean token NLL (nats)")
  ax.set_title(f"Loss versus position, windows of {length:,} tokens")
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  save_figure(fig, path)
  return True
