"""Long-context evaluation of a run: ``python -m hope_jax evaluate --config=... --workdir=DIR``.

Loads the run's latest checkpoint (or ``eval.step``) and runs every evaluation named in
``config.eval.evaluations`` (keys of :data:`EVALUATIONS`: perplexity here; copy, passkey and recall
in :mod:`hope_jax.evals_probes`; attention in :mod:`hope_jax.evals_attention`), writing
``<eval dir>/<name>.json`` = ``{"run": ..., **result}`` per evaluation, the scalar ``metrics`` of
all evaluations merged into ``<eval dir>/summary.json``, then this run's table (markdown, CSV, PNG).
The eval dir is ``DIR/eval`` without scaling and ``DIR/eval_<scaling>`` with it (``eval.output_dir``
overrides), so evaluations of one checkpoint with and without context extension sit side by side.
Inference-time context extension (``eval.scaling``) rebuilds the model's encoding for each
evaluation length with factor ``eval.scaling_factor`` or, when that is 0, evaluation length /
training length; every evaluation runs its model through :meth:`EvalContext.model_fn` at the
length it feeds, so all of them honour it.  Forward passes (:mod:`hope_jax.eval_forward`) compute
the output head in slices of ``eval.logits_chunk`` tokens, so full [B, T, vocab] logits never exist.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Any, Callable, Hashable

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx

from hope_jax import (batches, config_base, eval_forward, model, sharding, tables, tokenizer,
                      train, train_step)

SCALINGS = ("none", "linear", "ntk", "yarn", "llama3")
PAD_MULTIPLE = 64  # probe sequences are right-padded to a multiple of this (fewer compilations)


@dataclasses.dataclass
class EvalContext:
  """What every evaluation needs: the restored run, its data and where to write."""
  config: ml_collections.ConfigDict
  run: train.Run
  step: int
  tokenizer: tokenizer.Tokenizer
  split: batches.TokenizedSplit
  eval_dir: str
  verbose: bool = True
  compiled: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

  @property
  def train_length(self) -> int:
    """The run's training length."""
    return self.run.model_config.train_length

  @property
  def params(self) -> nnx.State:
    """The restored parameters."""
    return self.run.state.params

  @property
  def batch_divisor(self) -> int:
    """The number of batch shards; every forward batch is padded to a multiple of it."""
    return sharding.batch_divisor(self.run.mesh, self.run.rules)

  @property
  def writes_files(self) -> bool:
    """Whether this process writes results and figures (process 0)."""
    return jax.process_index() == 0

  def log(self, message: str) -> None:
    """Prints a progress message on process 0."""
    if self.verbose and self.writes_files:
      print(message, file=sys.stderr, flush=True)

  def scaling_factor(self, length: int) -> float:
    """The context-extension factor for an evaluation length (1 when not scaling)."""
    e = self.config.eval
    if e.scaling == "none":
      return 1.0
    return float(e.scaling_factor) if e.scaling_factor else max(1.0, length / self.train_length)

  def model_config(self, length: int) -> model.TransformerConfig:
    """The model config for an evaluation length, with the configured scaling applied."""
    cfg = self.run.model_config
    if self.config.eval.logn_scaling:
      cfg = dataclasses.replace(cfg, logn_scaling=True)
    if self.config.eval.scaling == "none":
      return cfg
    return dataclasses.replace(cfg, scaling=self.config.eval.scaling,
                               scaling_factor=self.scaling_factor(length))

  def model_fn(self, length: int, body: eval_forward.Body, *,
               key: Hashable) -> Callable[..., Any]:
    """Returns fn(tokens [B, T], positions=None) -> body(model at this length, ...), jitted.

    ``key`` names the body (and its options) for the compilation cache; B must be a multiple of
    :attr:`batch_divisor`.
    """
    cfg = self.model_config(length)
    if (cfg, key) not in self.compiled:
      self.compiled[(cfg, key)] = eval_forward.compile_body(
          body, _graphdef(cfg), self.params, self.run.state.model_state, mesh=self.run.mesh,
          rules=self.run.rules)
    return self.compiled[(cfg, key)]

  def _predict_fn(self, length: int) -> Callable[..., dict[str, jax.Array]]:
    chunk = self.config.eval.logits_chunk
    return self.model_fn(length, functools.partial(eval_forward.next_token_outputs,
                                                   chunk_tokens=chunk), key=("predict", chunk))

  def nll_fn(self, length: int) -> Callable[..., jax.Array]:
    """Returns fn(tokens [B, T]) -> float32 NLL [B, T-1] for the model at this length."""
    fn = self._predict_fn(length)
    return lambda tokens: fn(tokens)["nll"]

  def predict(self, tokens: np.ndarray, *, length: int | None = None) -> dict[str, np.ndarray]:
    """Teacher-forced NLL and greedy argmax [N, T-1] of every row, batched by eval.batch_tokens.

    ``length`` (default T, as for perplexity windows) picks the context-extension factor.
    """
    tokens = np.asarray(tokens, np.int32)
    fn = self._predict_fn(tokens.shape[1] if length is None else length)
    return eval_forward.batched_call(fn, tokens, batch_size=self.batch_rows(tokens.shape[1]),
                                     batch_divisor=self.batch_divisor)

  def predict_tokens(self, tokens: np.ndarray, length: int | None = None) -> np.ndarray:
    """Greedy predictions aligned with tokens [N, T]: column t predicts tokens[:, t] (column 0: -1).

    Rows are right-padded to a multiple of PAD_MULTIPLE tokens first (causal attention: earlier
    predictions are unchanged), so probes of nearby lengths share one compilation.
    """
    tokens = np.asarray(tokens, np.int32)
    width = tokens.shape[1]
    padded = np.pad(tokens, ((0, 0), (0, -width % PAD_MULTIPLE)),
                    constant_values=self.tokenizer.pad_id)
    argmax = self.predict(padded, length=width if length is None else length)["argmax"]
    return np.concatenate([np.full((argmax.shape[0], 1), -1, np.int32), argmax[:, :width - 1]],
                          axis=1)

  def batch_rows(self, length: int) -> int:
    """Rows per forward pass for sequences of this length: eval.batch_tokens // length (≥ 1)."""
    return max(1, self.config.eval.batch_tokens // length)

  def run_metadata(self) -> dict[str, Any]:
    """Describes the run for tables: encoder, label, scaling, seed, training length, step."""
    cfg = self.run.model_config
    params = dict(cfg.encoder_params)
    defaults = config_base.ENCODER_PARAM_DEFAULTS
    extras = [f"{k}={v}" for k, v in sorted(params.items())
              if k in defaults and v != defaults[k] and k != "layout"]
    label = cfg.encoder + (f" ({', '.join(extras)})" if extras else "")
    return {"encoder": cfg.encoder, "encoder_params": params, "label": label,
            "scaling": self.config.eval.scaling,
            "scaling_factor": float(self.config.eval.scaling_factor),
            "logn_scaling": bool(self.config.eval.logn_scaling or cfg.logn_scaling),
            "seed": int(self.config.seed), "train_length": self.train_length, "step": self.step,
            "rotated_bands": cfg.encoding.num_rotated_bands, "head_dim": cfg.head_dim,
            "num_params": model.num_params(cfg)}


@functools.lru_cache(maxsize=16)
def _graphdef(cfg: model.TransformerConfig) -> nnx.GraphDef:
  """The graph definition of a model config (no parameters are materialised)."""
  abstract = nnx.eval_shape(lambda: model.Transformer(cfg, rngs=nnx.Rngs(0)))
  graphdef, _ = nnx.split(abstract)
  return graphdef


def batched_nll(nll_fn: Callable[..., jax.Array], tokens: np.ndarray, *, batch_size: int,
                batch_divisor: int = 1) -> np.ndarray:
  """Runs nll_fn over rows of tokens in batches (padding the last one); returns [N, T-1]."""
  if tokens.shape[0] == 0:
    return np.zeros((0, tokens.shape[1] - 1), np.float32)
  return eval_forward.batched_call(nll_fn, tokens, batch_size=batch_size,
                                   batch_divisor=batch_divisor)


def select_windows(windows: batches.EvalWindows, max_windows: int) -> np.ndarray:
  """Returns indices of at most max_windows windows spread evenly over all of them (0 = all)."""
  n = windows.num_windows
  if not max_windows or n <= max_windows:
    return np.arange(n)
  return np.unique(np.linspace(0, n - 1, max_windows).round().astype(np.int64))


def bucket_means(values: np.ndarray, num_buckets: int) -> list[dict[str, float]]:
  """Averages [N, T] values over N and over num_buckets equal position ranges of T."""
  length = values.shape[1]
  edges = np.linspace(0, length, min(num_buckets, length) + 1).round().astype(int)
  return [{"start": int(a), "end": int(b), "nll": float(values[:, a:b].mean())}
          for a, b in zip(edges[:-1], edges[1:]) if b > a]


def eval_perplexity(ctx: EvalContext) -> dict[str, Any]:
  """Perplexity versus length over non-overlapping windows of validation documents ≥ T tokens.

  A window of T tokens is one forward pass scored on its T - 1 next-token predictions; windows
  never cross a document end.  ``position_buckets`` gives the mean NLL of equal position ranges.
  """
  e = ctx.config.eval
  results = []
  for multiple in e.lengths:
    length = int(multiple * ctx.train_length)
    windows = batches.eval_windows(ctx.split, length=length)
    if windows.num_windows == 0:
      ctx.log(f"perplexity: no validation document has {length} tokens; skipped")
      continue
    chosen = select_windows(windows, e.max_windows)
    start = time.perf_counter()
    nll = batched_nll(ctx.nll_fn(length), windows.tokens[chosen],
                      batch_size=ctx.batch_rows(length), batch_divisor=ctx.batch_divisor)
    mean = float(nll.mean())
    results.append({
        "length": length, "multiple": float(multiple), "nll": mean,
        "perplexity": float(math.exp(mean)), "windows": int(chosen.size),
        "tokens": int(nll.size), "documents": int(np.unique(windows.document_index[chosen]).size),
        "available_windows": windows.num_windows, "scaling_factor": ctx.scaling_factor(length),
        "position_buckets": bucket_means(nll, e.position_buckets),
        "seconds": time.perf_counter() - start,
    })
    ctx.log(f"perplexity @ {length}: {math.exp(mean):.3f} over {chosen.size} windows "
            f"({nll.size:,} tokens)")
  return {"results": results}


# Evaluations by name; each takes the context and returns a JSON-able dict, optionally with
# "metrics" ({name: scalar}, merged into summary.json) and "counts" ({name: examples behind it}).
# hope_jax/evals_probes.py and hope_jax/evals_attention.py register theirs on import (below).
EVALUATIONS: dict[str, Callable[[EvalContext], dict[str, Any]]] = {
    "perplexity": eval_perplexity,
}


def register_evaluation(name: str):
  """Decorator registering an evaluation under ``name``."""
  def wrap(fn):
    EVALUATIONS[name] = fn
    return fn
  return wrap


def output_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
  """The eval dir: eval.output_dir, else DIR/eval, or DIR/eval_<scaling>[_x<factor>] if scaling."""
  e = config.eval
  if e.output_dir:
    return os.path.join(workdir, e.output_dir)
  logn = "_logn" if e.logn_scaling else ""
  if e.scaling == "none":
    return os.path.join(workdir, "eval" + logn)
  return os.path.join(workdir, f"eval_{e.scaling}" + (f"_x{e.scaling_factor:g}"
                                                       if e.scaling_factor else "") + logn)


def check_known_names(field: str, names, known) -> None:
  """Raises ValueError naming config.eval.<field> when it lists names that are not in known."""
  unknown = [n for n in names if n not in known]
  if unknown:
    raise ValueError(f"config.eval.{field} has unknown name(s) {unknown}; known: {sorted(known)}")


def check_eval_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the config.eval field whose value the evaluations cannot use."""
  e = config.eval
  check_known_names("evaluations", e.evaluations, EVALUATIONS)
  if e.scaling not in SCALINGS:
    raise ValueError(f"config.eval.scaling must be one of {SCALINGS}, got {e.scaling!r}")
  if not (e.scaling_factor == 0 or e.scaling_factor >= 1):
    raise ValueError(f"config.eval.scaling_factor must be 0 (= T/L) or >= 1, got "
                     f"{e.scaling_factor!r}")
  for key in ("batch_tokens", "logits_chunk", "position_buckets"):
    if not (isinstance(e[key], int) and e[key] > 0):
      raise ValueError(f"config.eval.{key} must be a positive integer, got {e[key]!r}")


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


def load_context(config: ml_collections.ConfigDict, workdir: str, *,
                 verbose: bool = True) -> EvalContext:
  """Restores the run in workdir at eval.step (default: latest) and loads the evaluation split."""
  check_eval_config(config)
  run = train.setup(config, workdir, step=config.eval.step if config.eval.step >= 0 else None,
                    fresh_ok=False)
  step = run.restored_step
  run.checkpointer.close()
  tok = tokenizer.load_tokenizer(config.data.tokenizer)
  return EvalContext(config, run, int(step), tok,
                     train.load_split(config, config.eval.split, tok),
                     output_dir(config, workdir), verbose)


def fresh_context(config: ml_collections.ConfigDict, eval_dir: str, *,
                  devices: list[Any] | None = None, verbose: bool = False) -> EvalContext:
  """An EvalContext around a randomly initialised model (seed config.seed): baselines and tests.

  ``devices`` (default: all) are the mesh's devices.
  """
  check_eval_config(config)
  config_base.validate(config)
  mesh = sharding.make_mesh(sharding.MeshConfig.from_mapping(config.mesh), devices)
  rules = sharding.freeze_rules(config.mesh.rules.to_dict())
  cfg = train.model_config(config)
  optimizer = optax.identity()
  graphdef, state, shardings = train_step.create_train_state(
      cfg, optimizer, mesh=mesh, rules=rules, seed=config.seed,
      init_on=config.train.init_on)
  run = train.Run(config, mesh, rules, cfg, optimizer, graphdef, state, shardings,
                  checkpointer=None)
  tok = tokenizer.load_tokenizer(config.data.tokenizer)
  return EvalContext(config, run, 0, tok, train.load_split(config, config.eval.split, tok),
                     eval_dir, verbose)


def evaluate(config: ml_collections.ConfigDict, workdir: str, *, verbose: bool = True) -> dict:
  """Runs the configured evaluations on the run in workdir; returns {name: result}."""
  ctx = load_context(config, workdir, verbose=verbose)
  main = ctx.writes_files
  os.makedirs(ctx.eval_dir, exist_ok=True)
  meta = ctx.run_metadata()
  outputs = {}
  for name in config.eval.evaluations:
    ctx.log(f"evaluation {name} (step {ctx.step})")
    start = time.perf_counter()
    result = {"run": meta, **EVALUATIONS[name](ctx)}
    result["seconds"] = time.perf_counter() - start
    outputs[name] = result
    if main:
      _write_json(os.path.join(ctx.eval_dir, f"{name}.json"), result)
      update_summary(ctx.eval_dir, meta, name, result)
  have_results = any(os.path.exists(os.path.join(ctx.eval_dir, f))
                     for f in ("perplexity.json", "summary.json"))
  if main and have_results:
    tables.write_tables([ctx.eval_dir], os.path.join(ctx.eval_dir, "table.md"))
  return outputs


# The evaluation modules register themselves with register_evaluation when imported.
from hope_jax import evals_attention, evals_probes  # noqa: E402,F401  pylint: disable=C0413
