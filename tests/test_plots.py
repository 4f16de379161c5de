"""Figures: lengths read as people say them, one legend per figure, the training length marked."""

from __future__ import annotations

import pytest

from hope_jax.evaluation import plots


@pytest.mark.parametrize(
  "tokens, text",
  [
    (64, "64"),
    (1000, "1000"),
    (512, "512"),
    (1024, "1k"),
    (1536, "1.5k"),
    (32768, "32k"),
    (1 << 20, "1M"),
    (3 << 19, "1.5M"),
  ],
)
def test_format_length(tokens, text):
  assert plots.format_length(tokens) == text


@pytest.fixture
def saved(monkeypatch):
  """Captures figures instead of writing them."""
  figures = []
  monkeypatch.setattr(plots, "save_figure", lambda fig, path: figures.append(fig))
  return figures


def test_metric_panels_share_one_legend_and_mark_the_training_length(saved):
  panels = {
    "passkey_acc@T": {
      "rope": ([512, 1024, 2048], [0.9, 0.2, 0.0], [0.05, 0.1, 0.0]),
      "hope": ([512, 1024, 2048], [0.9, 0.6, 0.4], [0.0, 0.0, 0.0]),
    },
    "copy_acc@gap": {
      "rope": ([0, 100, 1000], [0.5, 0.3, 0.1], [0, 0, 0]),
      "hope": ([0, 100, 1000], [0.6, 0.4, 0.2], [0, 0, 0]),
    },
  }
  plots.metric_panels("unused.png", panels, marker=512)
  (fig,) = saved
  assert len(fig.legends) == 1
  assert all(ax.get_legend() is None for ax in fig.axes)
  labels = [t.get_text() for t in fig.legends[0].get_texts()]
  assert labels == ["rope", "hope", "training length L = 512"]
  passkey = fig.axes[0]
  passkey.figure.canvas.draw()
  assert [t.get_text() for t in passkey.get_xticklabels()] == ["512", "1k", "2k"]
  assert len(passkey.xaxis.get_minor_locator().tick_values(512, 2048)) == 0
  assert len(passkey.collections) == 1  # rope's seed band; hope has no spread
  copy = fig.axes[1]
  assert [t.get_text() for t in copy.get_xticklabels()] == ["0", "100", "1000"]
  assert [ax.get_title() for ax in fig.axes] == [
    "Passkey: accuracy by length",
    "Copy: accuracy by gap",
  ]
  assert copy.get_xlabel() == "gap (tokens)" and copy.get_ylabel() == "accuracy"
  assert any(line.get_xdata()[0] == 512 for line in copy.get_lines())  # L marked on gaps too


@pytest.mark.parametrize(
  "family, title",
  [
    ("copy_random_acc@gap", "Copy, random tokens: accuracy by gap"),
    ("recall_words_acc@pairs", "Recall, words: accuracy by pairs"),
    ("passkey_acc@T", "Passkey: accuracy by length"),
  ],
)
def test_panel_titles_read_as_words(family, title):
  assert plots.panel_title(family) == title
