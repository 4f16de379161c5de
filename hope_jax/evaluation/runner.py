"""Long-context evaluation of a run: ``python -m hope_jax evaluate --config=... --workdir=DIR``.

Loads the run's latest checkpoint (or ``eval.step``) and runs every evaluation named in
``config.eval.evaluations`` (keys of :data:`EVALUATIONS`: perplexity here; copy, passkey and recall
in :mod:`hope_jax.evaluation.probe_evals`; attention in :mod:`hope_jax.evaluation.attention`), writing
``<eval dir>/<name>.json`` = ``{"run": ..., **result}`` per evaluation, the scalar ``metrics`` of
all evaluations merged into ``<eval dir>/summary.json``, then this run's table (markdown, CSV, PNG);
a source-tree corpus's manifest with the evaluated split's tokens goes to
``<eval dir>/data_manifest.json``.
The eval dir is ``DIR/eval`` without scaling and ``DIR/eval_<scaling>`` with it (``eval.output_dir``
overrides), so evaluations of one checkpoint with and without context extension sit side by side.
Inference-time context extension (``eval.scaling``) rebuilds the model's encoding for each
evaluation length with factor ``eval.scaling_factor`` or, when that is 0, evaluation length /
training length; every evaluation runs its model through :meth:`EvalContext.model_fn` at the
length it feeds, so all of them honour it.  Forward passes (:mod:`hope_jax.evaluation.forward`) compute
the output head in slices of ``eval.logits_chunk`` tokens, so full [B, T, vocab] logits never exist;
windows of ``eval.long_forward_min_tokens`` tokens or more run one block at a time
(:mod:`hope_jax.evaluation.long_forward`), so perplexity, its loss by position and the probes reach
1,048,576-token windows on one GPU.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from hope_jax import model
from hope_jax.data.config import DataConfig
from hope_jax.evaluation import attention as evals_attention
from hope_jax.evaluation import perplexity, probe_evals, tables
from hope_jax.evaluation.config import EvalConfig
from hope_jax.evaluation.context import EvalContext, load_context
from hope_jax.parallel import sharding
from hope_jax.training.config import OptimizerConfig

# Evaluations by name; each takes the context and returns a JSON-able dict, optionally with
# "metrics" ({name: scalar}, merged into summary.json) and "counts" ({name: examples behind it}).
EVALUATIONS: dict[str, Callable[[EvalContext], dict[str, Any]]] = {
  "perplexity": perplexity.eval_perplexity,
  "copy": probe_evals.eval_copy,
  "passkey": probe_evals.eval_passkey,
  "recall": probe_evals.eval_recall,
  "attention": evals_attention.eval_attention,
}


def _write_json(path: str, data: dict) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(data, f, indent=1)


def update_summary(eval_dir: str, run: dict[str, Any], name: str, result: dict[str, Any]) -> None:
  """Merges an evaluation's metrics into eval_dir/summary.json, replacing its earlier ones.

  Metrics of another run or checkpoint (different ``run`` metadata) are dropped.
  """
  path = os.path.join(eval_dir, "summary.json")
  run = json.loads(json.dumps(run))
  summary = {"run": run, "metrics": {}, "counts": {}, "evaluations": {}}
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      old = json.load(f)
    if old.get("run") == run:
      summary.update({k: old.get(k, {}) for k in ("metrics", "counts", "evaluations")})
  for key in summary["evaluations"].pop(name, []):
    summary["metrics"].pop(key, None)
    summary["counts"].pop(key, None)
  metrics = {k: float(v) for k, v in result.get("metrics", {}).items()}
  summary["metrics"].update(metrics)
  summary["counts"].update({k: int(v) for k, v in result.get("counts", {}).items()})
  if metrics:
    summary["evaluations"][name] = sorted(metrics)
  if summary["metrics"]:
    _write_json(path, summary)


def evaluate(
  config: EvalConfig,
  model_config: model.TransformerConfig,
  mesh_config: sharding.MeshConfig,
  data: DataConfig,
  *,
  workdir: str,
  optimizer: OptimizerConfig,
  seed: int = 0,
  distributed: bool | str = "auto",
  verbose: bool = True,
) -> dict:
  """Runs the configured evaluations on the run in workdir; returns {name: result}."""
  ctx = load_context(
    config,
    model_config,
    mesh_config,
    data,
    workdir=workdir,
    optimizer=optimizer,
    seed=seed,
    distributed=distributed,
    verbose=verbose,
  )
  main = ctx.writes_files
  os.makedirs(ctx.eval_dir, exist_ok=True)
  if main and ctx.split.manifest is not None:  # the evaluated split, with its tokens
    _write_json(os.path.join(ctx.eval_dir, "data_manifest.json"), ctx.split.manifest)
  meta = ctx.run_metadata()
  outputs = {}
  for name in config.evaluations:
    ctx.log(f"evaluation {name} (step {ctx.step})")
    start = time.perf_counter()
    result = {"run": meta, **EVALUATIONS[name](ctx)}
    result["seconds"] = time.perf_counter() - start
    outputs[name] = result
    if main:
      _write_json(os.path.join(ctx.eval_dir, f"{name}.json"), result)
      update_summary(ctx.eval_dir, meta, name, result)
  have_results = any(
    os.path.exists(os.path.join(ctx.eval_dir, f)) for f in ("perplexity.json", "summary.json")
  )
  if main and have_results:
    tables.write_tables([ctx.eval_dir], os.path.join(ctx.eval_dir, "table.md"))
  return outputs
