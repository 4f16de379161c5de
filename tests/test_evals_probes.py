"""Tests of the probe evaluations: scoring, greedy equivalence, grids and metrics."""

import json
import os

import jax
import numpy as np
import pytest
from flax import nnx

from hope_jax.config import base as config_base
from hope_jax.config.resolve import resolve
from hope_jax.data.tokenizer import load_tokenizer
from hope_jax.evaluation import config as eval_config_lib
from hope_jax.evaluation import context as eval_context
from hope_jax.evaluation import probe_evals as evals_probes
from hope_jax.evaluation import probes, recall_probes
from hope_jax.evaluation import runner as evaluate
from hope_jax.model import generate


@pytest.fixture(scope="module")
def tokenizer():
  return load_tokenizer("default")


@pytest.fixture(scope="module")
def context(tmp_path_factory):
  """A randomly initialised tiny model on one device, L = 32."""
  config = config_base.base_config()
  config.model.update(dict(num_layers=1, embed_dim=64, num_heads=2, num_kv_heads=2, mlp_dim=128))
  config.data.seq_len = 32
  config.eval.copy.update(dict(gaps=(0.0, 1.0), examples=3, sources=eval_config_lib.COPY_SOURCES))
  config.eval.passkey.update(dict(lengths=(1, 3), depths=(0.0, 0.5, 1.0), keys=2))
  config.eval.recall.update(
    dict(pairs=(2, 8), distances=(0.5, 2.0), examples=2, sources=eval_config_lib.RECALL_SOURCES)
  )
  run = resolve(config)
  return eval_context.fresh_context(
    run.eval,
    run.model,
    run.mesh,
    run.data,
    str(tmp_path_factory.mktemp("eval")),
    devices=jax.devices()[:1],
  )


def oracle(tokens, length):
  """Predicts every token right (the column of a prediction is the token it predicts)."""
  del length
  return np.asarray(tokens).copy()


def test_span_accuracy_counts_whole_runs():
  mask = np.array([[0, 1, 1, 0, 1], [0, 0, 1, 1, 1]], bool)
  hits = np.array([[0, 1, 0, 0, 1], [0, 0, 1, 1, 1]], bool)
  assert evals_probes.span_accuracy(hits, mask) == pytest.approx(2 / 3)
  assert np.isnan(evals_probes.span_accuracy(hits, np.zeros_like(mask)))


def test_passkey_scoring_accepts_exactly_the_right_key(tokenizer):
  example = probes.passkey_example(tokenizer, length=128, depth=0.5, seed=3)
  answer = list(example.answer_ids)
  space = tokenizer.encode(" .")[-1]
  digits = sorted(example.digit_ids)
  wrong = next(d for d in digits if d != answer[-1])
  extra = next(d for d in digits if d != answer[0])
  assert probes.score_passkey(answer + [space], example)
  assert probes.score_passkey(answer, example)
  assert not probes.score_passkey(answer[:-1] + [wrong, space], example)  # a wrong digit
  assert not probes.score_passkey(answer + [extra], example)  # a longer number
  assert not probes.score_passkey(answer[:-1], example)  # a prefix
  # Through the evaluation: the oracle finds every key; one wrong digit fails the cell.
  lengths = [(4.0, 128)]
  out = evals_probes.passkey_accuracy(
    oracle, tokenizer, lengths=lengths, depths=(0.0, 1.0), keys=2, seed=0
  )
  assert [r["accuracy"] for r in out["results"]] == [1.0, 1.0] and out["metrics"]["passkey_acc"]

  def wrong_digits(tokens, length):  # every digit predicted as another digit
    predicted = oracle(tokens, length)
    is_digit = np.isin(predicted, digits)
    predicted[is_digit] = np.where(predicted[is_digit] == digits[0], digits[1], digits[0])
    return predicted

  out = evals_probes.passkey_accuracy(
    wrong_digits, tokenizer, lengths=lengths, depths=(0.5,), keys=3, seed=3
  )
  assert out["results"][0]["accuracy"] == 0.0 and out["results"][0]["digit_accuracy"] == 0.0
  assert len(set(out["results"][0]["keys"])) == 3


def test_teacher_forced_argmax_is_greedy_decoding(context, tokenizer):
  example = probes.passkey_example(tokenizer, length=96, depth=0.25, seed=7)
  tokens = np.append(example.tokens, tokenizer.pad_id)[None]
  predicted = context.predict_tokens(tokens, 96)[0]
  start, n = example.answer_start, len(example.answer_ids)
  net = nnx.merge(context.run.graphdef, context.params, context.run.state.model_state)
  greedy = np.asarray(generate(net, tokens[:, :start], n + 1))[0, start:]
  forced = predicted[start : start + n + 1]
  # Identical up to and including the first token that differs from the key.
  wrong = np.flatnonzero(forced[:n] != np.asarray(example.answer_ids))
  upto = wrong[0] + 1 if wrong.size else n + 1
  np.testing.assert_array_equal(greedy[:upto], forced[:upto])
  assert probes.score_passkey(greedy, example) == probes.score_passkey(forced, example)


def test_copy_accuracy_and_metrics(context):
  sources = {"text": context.split, "random": "random"}
  gaps = [(0.0, 0), (1.0, 32)]
  perfect = evals_probes.copy_accuracy(
    oracle, sources, gaps=gaps, segment_length=8, num_examples=3, seed=0, vocab_size=16384
  )
  assert len(perfect["results"]) == 4
  for r in perfect["results"]:
    assert r["accuracy"] == r["exact_match"] == 1.0
    assert r["length"] == 16 + r["gap"] and r["targets"] == 3 * 7
  assert perfect["metrics"] == {
    "copy_text_acc@gap=0": 1.0,
    "copy_text_acc@gap=32": 1.0,
    "copy_random_acc@gap=0": 1.0,
    "copy_random_acc@gap=32": 1.0,
  }

  def first_copy_only(tokens, length):  # right on the first half, wrong on the second copy
    predicted = oracle(tokens, length)
    predicted[:, tokens.shape[1] - 8 :] = -1
    return predicted

  none = evals_probes.copy_accuracy(
    first_copy_only, sources, gaps=gaps, segment_length=8, num_examples=3, seed=0, vocab_size=16384
  )
  assert all(r["accuracy"] == 0.0 for r in none["results"])


def test_recall_accuracy_skips_impossible_distances(tokenizer):
  out = evals_probes.recall_accuracy(
    oracle,
    {
      "words": recall_probes.WordLines(tokenizer),
      "random": recall_probes.RandomPairs.over_vocabulary(16384),
    },
    pairs=(2, 8),
    distances=[(0.25, 8), (2.0, 64)],
    queries=3,
    num_examples=2,
    seed=0,
  )
  cells = {(r["source"], r["pairs"], r["distance"]) for r in out["results"]}
  skipped = {(s["source"], s["pairs"], s["distance"]) for s in out["skipped"]}
  assert ("words", 8, 8) in skipped and ("words", 8, 64) in cells and ("random", 2, 8) in cells
  assert cells | skipped == {
    (s, p, d) for s in ("words", "random") for p in (2, 8) for d in (8, 64)
  }
  assert all(r["accuracy"] == r["token_accuracy"] == 1.0 for r in out["results"])
  assert out["metrics"]["recall_words_acc@d=64"] == 1.0
  assert out["counts"]["recall_random_acc@pairs=2"] == 2 * 2 * 2  # 2 distances × 2 × 2 queries


def test_probe_evaluations_on_a_random_model(context):
  for name in ("copy", "passkey", "recall"):
    result = evaluate.EVALUATIONS[name](context)
    json.dumps(result)
    assert result["metrics"] and all(0.0 <= v <= 1.0 for v in result["metrics"].values())
    sources = {r["source"] for r in result.get("results", []) if "source" in r}
    assert name == "passkey" or sources == set(getattr(context.config, name).sources)
  passkey = evaluate.EVALUATIONS["passkey"](context)
  # 32 tokens cannot hold the passkey text: skipped; 96 tokens: 3 depths × 2 keys.
  assert [s["length"] for s in passkey["skipped"]] == [32]
  assert {r["length"] for r in passkey["results"]} == {96} and len(passkey["results"]) == 3
  assert passkey["counts"]["passkey_acc@T=96"] == 6
  assert os.path.getsize(os.path.join(context.eval_dir, "passkey.png")) > 1000


def test_probe_sources_match_the_config_names():
  assert tuple(evals_probes.COPY_SOURCES) == eval_config_lib.COPY_SOURCES
  assert tuple(evals_probes.RECALL_SOURCES) == eval_config_lib.RECALL_SOURCES


@pytest.mark.parametrize(
  "group, field, value",
  [
    ("copy", "sources", ("text", "books")),
    ("passkey", "depths", (0.5, 1.5)),
    ("recall", "queries", 0),
    ("attention", "buckets", 1),
    ("perplexity", "lengths", ()),
  ],
)
def test_bad_probe_config_names_the_field(group, field, value):
  config = config_base.base_config()
  config.eval[group][field] = value
  with pytest.raises(ValueError, match=f"config.eval.{group}.{field}"):
    resolve(config)
