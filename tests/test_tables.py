"""Tests of the results tables: seeds merged into mean ± std, probes, scaling dirs, CLI."""

import csv
import json
import os
import subprocess
import sys

import pytest

from hope_jax.evaluation import tables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(encoder, seed, scaling="none"):
  return {
    "encoder": encoder,
    "label": encoder,
    "scaling": scaling,
    "scaling_factor": 0.0,
    "seed": seed,
    "train_length": 64,
    "step": 100,
  }


def write_run(
  root, name, encoder, seed, perplexities, metrics=None, *, scaling="none", subdir="eval"
):
  """Writes DIR/<subdir>/perplexity.json (lengths 64, 128) and summary.json; returns DIR."""
  eval_dir = os.path.join(root, name, subdir)
  os.makedirs(eval_dir, exist_ok=True)
  results = [
    {
      "length": n,
      "multiple": n / 64,
      "nll": 0.0,
      "perplexity": p,
      "windows": 4,
      "tokens": 4 * (n - 1),
      "position_buckets": [
        {"start": 0, "end": n // 2, "nll": 3.0},
        {"start": n // 2, "end": n - 1, "nll": 2.5},
      ],
    }
    for n, p in zip((64, 128), perplexities)
  ]
  run = _run(encoder, seed, scaling)
  with open(os.path.join(eval_dir, "perplexity.json"), "w") as f:
    json.dump({"run": run, "results": results}, f)
  if metrics is not None:
    with open(os.path.join(eval_dir, "summary.json"), "w") as f:
      json.dump({"run": run, "metrics": metrics, "counts": {k: 10 for k in metrics}}, f)
  return os.path.join(root, name)


@pytest.fixture
def runs(tmp_path):
  root = str(tmp_path)
  dirs = [
    write_run(
      root,
      "rope0",
      "rope",
      0,
      (10.0, 100.0),
      {
        "passkey_acc": 0.2,
        "passkey_acc@T=64": 0.4,
        "passkey_acc@T=128": 0.0,
        "copy_text_acc@gap=0": 0.9,
        "copy_text_acc@gap=32": 0.5,
      },
    ),
    write_run(
      root,
      "rope1",
      "rope",
      1,
      (12.0, 140.0),
      {
        "passkey_acc": 0.4,
        "passkey_acc@T=64": 0.8,
        "passkey_acc@T=128": 0.0,
        "copy_text_acc@gap=0": 0.7,
        "copy_text_acc@gap=32": 0.3,
      },
    ),
    write_run(root, "hope0", "hope", 0, (11.0, 20.0), {"passkey_acc": 1.0}),
  ]
  # A YaRN-scaled evaluation of rope0 beside its plain one.
  write_run(root, "rope0", "rope", 0, (10.0, 30.0), scaling="yarn", subdir="eval_yarn")
  return dirs


def test_two_seeds_merge_into_mean_and_std(runs, tmp_path):
  out = str(tmp_path / "out" / "table.md")
  markdown = tables.write_tables(runs, out)
  lines = markdown.splitlines()
  row = next(line for line in lines if line.startswith("| rope | 2 |"))
  assert "11.00 ± 1.41" in row and "120.00 ± 28.28" in row  # std with ddof = 1
  assert "| hope | 1 | 11.00 | 20.00 |" in markdown  # one seed: no spread
  assert "| rope + yarn (×T/L) | 1 | 10.00 | 30.00 |" in markdown
  assert "**64 (L)**" in markdown and "252 (4)" in markdown
  # Probe metrics: one table per family, the training length marked, examples per cell.
  assert "**T=64 (L)** | T=128 |" in markdown
  copy_row = next(line for line in lines if line.startswith("| rope | 2 | 0.80 ± 0.14"))
  assert "0.40 ± 0.14" in copy_row
  assert "| hope | 1 | 1.00 |" in markdown and "| examples per run |" in markdown
  with open(str(tmp_path / "out" / "table.csv")) as f:
    rows = list(csv.DictReader(f))
  assert {(r["run"], r["length"]) for r in rows} >= {("rope", "64"), ("hope", "128")}
  rope64 = next(r for r in rows if r["run"] == "rope" and r["length"] == "64")
  assert float(rope64["perplexity_mean"]) == 11.0 and rope64["seeds"] == "2"
  with open(str(tmp_path / "out" / "table_probes.csv")) as f:
    probes = list(csv.DictReader(f))
  passkey = next(r for r in probes if r["run"] == "rope" and r["metric"] == "passkey_acc@T=64")
  assert float(passkey["mean"]) == pytest.approx(0.6) and passkey["examples"] == "10"
  for name in ("table.png", "table_probes.png", "table_positions.png"):
    assert (tmp_path / "out" / name).stat().st_size > 1000


def test_eval_dirs_are_found_once(runs):
  both = tables.result_files([runs[0], os.path.join(runs[0], "eval")])
  assert [os.path.basename(os.path.dirname(p)) for p in both] == ["eval", "eval_yarn"]
  assert len(tables.load_results([runs[0]], "summary.json")) == 1


def test_probe_summaries_alone_make_a_table(tmp_path):
  eval_dir = tmp_path / "run" / "eval"
  eval_dir.mkdir(parents=True)
  (eval_dir / "summary.json").write_text(
    json.dumps({"run": _run("nope", 0), "metrics": {"recall_words_acc@d=32": 0.5}})
  )
  markdown = tables.write_tables([str(tmp_path / "run")], str(tmp_path / "t.md"))
  assert "Perplexity" not in markdown and "| nope | 1 | 0.50 |" in markdown
  with pytest.raises(FileNotFoundError, match="perplexity.json"):
    tables.write_tables([str(tmp_path / "missing")], str(tmp_path / "u.md"))


def test_table_command_line(runs, tmp_path):
  out = str(tmp_path / "cli.md")
  proc = subprocess.run(
    [sys.executable, "-m", "hope_jax", "table", *runs, f"--out={out}"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=120,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "11.00 ± 1.41" in proc.stdout and os.path.exists(out)


def test_series_styles_stay_distinct_past_ten_lines():
  from hope_jax.evaluation import plots

  styles = [tuple(sorted(plots.series_style(i).items())) for i in range(40)]
  assert len(set(styles)) == 40


def test_probe_seeds_count_only_runs_that_measured_the_family(tmp_path):
  root = str(tmp_path)
  dirs = [
    write_run(
      root, "hope0", "hope", 0, (11.0, 20.0), {"passkey_acc@T=64": 0.4, "copy_text_acc@gap=0": 0.9}
    ),
    write_run(root, "hope1", "hope", 1, (12.0, 22.0), {"passkey_acc@T=64": 0.6}),
    write_run(root, "alibi0", "alibi", 0, (9.0, 10.0), {"passkey_acc@T=64": 0.2}),
  ]
  markdown = tables.summary_markdown(tables.load_results(dirs, "summary.json"))
  copy = markdown.split("**copy_text_acc@gap**")[1].split("**")[0]
  passkey = markdown.split("**passkey_acc@T**")[1]
  assert "| hope | 1 | 0.90 |" in copy and "alibi" not in copy
  assert "| hope | 2 | 0.50 ± 0.14 |" in passkey and "| alibi | 1 | 0.20 |" in passkey


def test_a_longer_evaluation_of_the_same_run_joins_its_row(runs, tmp_path):
  """An eval dir with other lengths (e.g. eval_long-N) adds columns to the run's row."""
  long_dir = os.path.join(runs[2], "eval_long-4")
  os.makedirs(long_dir)
  result = {"length": 256, "multiple": 4.0, "nll": 0.0, "perplexity": 55.0, "windows": 2}
  result.update(tokens=2 * 255, position_buckets=[{"start": 0, "end": 255, "nll": 4.0}])
  with open(os.path.join(long_dir, "perplexity.json"), "w") as f:
    json.dump({"run": _run("hope", 0), "results": [result]}, f)
  markdown = tables.write_tables(runs, str(tmp_path / "out" / "table.md"))
  assert "| hope | 1 | 11.00 | 20.00 | 55.00 |" in markdown
  assert "| rope | 2 | 11.00 ± 1.41 | 120.00 ± 28.28 | — |" in markdown
  assert "510 (2)" in markdown
