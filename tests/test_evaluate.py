"""Tests of the evaluation runner: perplexity, chunked NLL, scaling, summaries, files, CLI."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from hope_jax.config import base as config_base
from hope_jax.config import commands
from hope_jax.config.resolve import resolve
from hope_jax.data import batches
from hope_jax.evaluation import context as eval_context
from hope_jax.evaluation import runner as evaluate
from hope_jax.training import step as train_step

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = dict(num_layers=1, embed_dim=64, num_heads=2, num_kv_heads=2, mlp_dim=128)
SMALL_EVAL = dict(
  evaluations=("perplexity",),
  perplexity=dict(lengths=(1, 2), max_windows=6),
  copy=dict(gaps=(0.0, 1.0), examples=2),
  passkey=dict(lengths=(3,), depths=(0.0, 1.0), keys=1),
  recall=dict(pairs=(2,), distances=(1.0,), examples=2),
  attention=dict(windows=1, buckets=6),
)


def small_config(**eval_fields):
  config = config_base.base_config()
  config.model.update(MODEL)
  config.data.seq_len = 32
  config.train.update(
    dict(
      steps=3,
      batch_size=8,
      learning_rate=1e-2,
      warmup_steps=1,
      log_every=3,
      checkpoint_every=3,
      tensorboard=False,
    )
  )
  config.eval.update({**SMALL_EVAL, **eval_fields})
  return config


def eval_config(**eval_fields):
  return resolve(small_config(**eval_fields)).eval


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("run"))
  config = small_config()
  config.train.update(dict(steps=1, warmup_steps=0, log_every=1, checkpoint_every=1))
  commands.train(config, workdir, verbose=False)
  return workdir


@pytest.fixture(scope="module")
def context(run_dir):
  run = resolve(small_config())
  return eval_context.load_context(
    run.eval, run.model, run.mesh, run.data, workdir=run_dir, optimizer=run.optimizer, verbose=False
  )


def _independent_nll(ctx, tokens):
  """Mean token NLL straight from the model's logits and log_softmax."""
  net = nnx.merge(ctx.run.graphdef, ctx.params, ctx.run.state.model_state)
  logits = jax.jit(lambda t: net(t))(tokens[:, :-1])
  log_probs = jax.nn.log_softmax(np.asarray(logits, np.float64), axis=-1)
  return -np.take_along_axis(np.asarray(log_probs), tokens[:, 1:, None], axis=-1)[..., 0]


def test_train_then_evaluate_everything_end_to_end(run_dir, context):
  names = ("perplexity", "copy", "passkey", "recall", "attention")
  out = commands.evaluate(small_config(evaluations=names), run_dir, verbose=False)
  eval_dir = os.path.join(run_dir, "eval")
  saved = {n: json.loads(Path(eval_dir, f"{n}.json").read_text()) for n in names}
  for name in names:
    assert saved[name]["run"]["encoder"] == "rope" and saved[name]["run"]["train_length"] == 32
    assert set(out[name]) == set(saved[name]) and saved[name]["seconds"] > 0
  # Perplexity: 1× and 2× L, equal to exp of the mean token loss computed from the logits.
  results = saved["perplexity"]["results"]
  assert [r["length"] for r in results] == [32, 64]
  split = context.split
  for result in results:
    length = result["length"]
    windows = batches.eval_windows(split, length=length)
    chosen = eval_context.select_windows(windows, 6)
    assert result["windows"] == chosen.size == 6 and result["tokens"] == 6 * (length - 1)
    # Windows never cross the end of a document (nor contain its EOS).
    starts = split.doc_offsets[windows.document_index] + windows.offsets
    assert np.all(starts + length <= split.doc_ends[windows.document_index] - 1)
    assert not (windows.tokens == split.eos_id).any()
    nll = _independent_nll(context, windows.tokens[chosen])
    assert math.isclose(result["perplexity"], math.exp(nll.mean()), rel_tol=1e-5)
    buckets = result["position_buckets"]
    weighted = sum(b["nll"] * (b["end"] - b["start"]) for b in buckets) / (length - 1)
    assert math.isclose(weighted, nll.mean(), rel_tol=1e-5)
    assert 1 < result["perplexity"] < 2 * 16384
  # Probes and attention: their files, summary metrics and tables.
  for name in (
    "passkey.png",
    "attention_distance.png",
    "band_contributions.png",
    "table.md",
    "table.csv",
    "table.png",
    "table_probes.csv",
    "table_probes.png",
  ):
    assert os.path.getsize(os.path.join(eval_dir, name)) > 0
  summary = json.loads(Path(eval_dir, "summary.json").read_text())
  metrics = summary["metrics"]
  assert {
    "copy_text_acc@gap=0",
    "copy_random_acc@gap=32",
    "passkey_acc",
    "passkey_acc@T=96",
    "recall_words_acc@d=32",
    "recall_random_acc@pairs=2",
  } <= set(metrics)
  assert all(0.0 <= v <= 1.0 for v in metrics.values())
  assert summary["counts"]["passkey_acc"] == 2 and summary["counts"]["copy_text_acc@gap=0"] == 30
  assert set(summary["evaluations"]) == {"copy", "passkey", "recall"}
  assert saved["attention"]["length"] == 64 and len(saved["attention"]["layers"]) == 1
  table = Path(eval_dir, "table.md").read_text()
  assert "**32 (L)**" in table and "| rope | 1 |" in table and "passkey_acc@T" in table


def test_chunked_head_matches_full_logits(context):
  tokens = batches.eval_windows(context.split, length=64).tokens[:3]
  full = train_step.make_eval_fn(
    context.run.graphdef,
    mesh=context.run.mesh,
    rules=context.run.rules,
    model_state=context.run.state.model_state,
  )
  padded = np.concatenate([tokens] + [tokens[-1:]] * 5)  # 8 rows: the 8 batch shards
  expected = np.asarray(full(context.params, padded))[:3]
  original = context.config
  context.config = dataclasses.replace(original, logits_chunk=7)  # 3 rows × 2 positions: 32 slices
  try:
    got = context.predict(tokens)
  finally:
    context.config = original
  np.testing.assert_allclose(got["nll"], expected, rtol=1e-5, atol=1e-5)
  net = nnx.merge(context.run.graphdef, context.params, context.run.state.model_state)
  logits = jax.jit(lambda t: net(t))(tokens[:, :-1])
  np.testing.assert_array_equal(got["argmax"], np.asarray(logits).argmax(-1))
  # Probe predictions: right-padding to PAD_MULTIPLE leaves them unchanged, column t -> token t.
  predicted = context.predict_tokens(tokens[:, :50])
  assert predicted.shape == (3, 50) and (predicted[:, 0] == -1).all()
  np.testing.assert_array_equal(predicted[:, 1:], got["argmax"][:, :49])


def test_perplexity_and_probes_take_the_long_forward_from_its_threshold(context):
  from hope_jax.evaluation import perplexity

  assert context.config.long_forward_min_tokens == 32768  # the default: not at 32 or 64
  tokens = batches.eval_windows(context.split, length=64).tokens[:3]
  with jax.default_matmul_precision("highest"):  # no TF32 on a GPU host
    whole = perplexity.eval_perplexity(context)["results"]
    predicted = context.predict(tokens)
    original = context.config
    context.config = dataclasses.replace(original, long_forward_min_tokens=64)
    try:
      long = perplexity.eval_perplexity(context)["results"]
      long_predicted = context.predict(tokens)
    finally:
      context.config = original
  assert [r["long_forward"] for r in whole] == [False, False]
  assert [r["long_forward"] for r in long] == [False, True]
  assert any(key[1][0] == "long" for key in context.compiled)
  for a, b in zip(whole, long):
    assert a["length"] == b["length"] and a["windows"] == b["windows"]
    assert math.isclose(a["nll"], b["nll"], rel_tol=1e-5)
    np.testing.assert_allclose(
      [x["nll"] for x in a["position_buckets"]],
      [x["nll"] for x in b["position_buckets"]],
      rtol=1e-5,
    )
  np.testing.assert_allclose(long_predicted["nll"], predicted["nll"], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(long_predicted["argmax"], predicted["argmax"])


@pytest.mark.parametrize("scaling", ["linear", "ntk", "yarn", "llama3"])
def test_scaling_changes_rope_beyond_L_and_nothing_at_L(context, scaling):
  windows = {n: batches.eval_windows(context.split, length=n).tokens[:8] for n in (32, 64)}
  plain = {
    n: eval_context.batched_nll(context.nll_fn(n), w, batch_size=8, batch_divisor=8)
    for n, w in windows.items()
  }
  original = context.config
  context.config = dataclasses.replace(original, scaling=scaling)
  try:
    assert context.scaling_factor(32) == 1.0 and context.scaling_factor(64) == 2.0
    scaled = {
      n: eval_context.batched_nll(context.nll_fn(n), w, batch_size=8, batch_divisor=8)
      for n, w in windows.items()
    }
  finally:
    context.config = original
  np.testing.assert_allclose(scaled[32], plain[32], rtol=1e-6, atol=1e-6)
  assert np.abs(scaled[64] - plain[64]).max() > 1e-3


def test_summary_merges_evaluations_and_replaces_stale_metrics(tmp_path):
  run = {"encoder": "rope", "seed": 0, "step": 3}
  evaluate.update_summary(
    str(tmp_path), run, "copy", {"metrics": {"a@x=1": 0.5}, "counts": {"a@x=1": 4}}
  )
  evaluate.update_summary(str(tmp_path), run, "passkey", {"metrics": {"p": 1.0}})
  evaluate.update_summary(str(tmp_path), run, "copy", {"metrics": {"a@x=2": 0.25}})
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["metrics"] == {"a@x=2": 0.25, "p": 1.0} and summary["counts"] == {}
  evaluate.update_summary(str(tmp_path), {**run, "step": 6}, "copy", {"metrics": {"b": 0.0}})
  assert json.loads((tmp_path / "summary.json").read_text())["metrics"] == {"b": 0.0}


@pytest.mark.parametrize(
  "field, value",
  [
    ("evaluations", ("perplexity", "copyy")),
    ("scaling", "rope"),
    ("logits_chunk", 0),
    ("scaling_factor", 0.5),
    ("long_forward_min_tokens", -1),
  ],
)
def test_bad_eval_config_names_the_field(field, value):
  with pytest.raises(ValueError, match=f"eval.{field}"):
    eval_config(**{field: value})


def test_output_dir_separates_scaled_evaluations():
  assert eval_context.output_dir(eval_config(), "W") == os.path.join("W", "eval")
  assert eval_context.output_dir(eval_config(scaling="ntk"), "W") == os.path.join("W", "eval_ntk")
  assert eval_context.output_dir(eval_config(scaling="yarn", scaling_factor=4.0), "W") == (
    os.path.join("W", "eval_yarn_x4")
  )


@pytest.mark.slow
def test_cli_evaluate(run_dir, tmp_path):
  overrides = [f"--config.model.{k}={v}" for k, v in MODEL.items()] + [
    "--config.data.seq_len=32",
    "--config.eval.perplexity.lengths=(2,)",
    "--config.eval.perplexity.max_windows=2",
    "--config.eval.evaluations=('perplexity',)",
    "--config.eval.output_dir=eval_cli",
  ]
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "hope_jax",
      "evaluate",
      "--config=configs/tiny_cpu.py",
      f"--workdir={run_dir}",
      *overrides,
    ],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  saved = json.loads(Path(run_dir, "eval_cli", "perplexity.json").read_text())
  assert [r["length"] for r in saved["results"]] == [64]
  assert os.path.exists(os.path.join(run_dir, "eval_cli", "table.md"))


def test_perplexity_progress_gives_an_eta_until_the_last_length(context, monkeypatch):
  from hope_jax.evaluation import perplexity

  lines: list[str] = []
  monkeypatch.setattr(context, "log", lines.append)
  perplexity.eval_perplexity(context)
  progress = [line for line in lines if line.startswith("perplexity @")]
  assert len(progress) == 2  # lengths 32 and 64
  assert "ETA " in progress[0] and progress[0].endswith("at this pace)")
  assert "ETA" not in progress[1]
