"""What every evaluation gets: the restored run, its data, jitted forward passes at each length."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from collections.abc import Callable, Hashable
from typing import Any

import jax
import numpy as np
import optax
from etils import epath
from flax import nnx

from hope_jax import model
from hope_jax.data import batches, tokenizer
from hope_jax.data.config import DataConfig
from hope_jax.evaluation import forward as eval_forward
from hope_jax.evaluation import long_forward
from hope_jax.evaluation.config import EvalConfig
from hope_jax.parallel import sharding
from hope_jax.positional import registry
from hope_jax.training import optim
from hope_jax.training import setup as training_setup
from hope_jax.training.config import OptimizerConfig

PAD_MULTIPLE = 64  # probe sequences are right-padded to a multiple of this (fewer compilations)


@dataclasses.dataclass
class EvalContext:
  """What every evaluation needs: the restored run, its data, its options and where to write."""

  config: EvalConfig
  run: training_setup.Run
  step: int
  tokenizer: tokenizer.Tokenizer
  split: batches.TokenizedSplit
  eval_dir: str
  seed: int = 0  # the training seed (recorded with the results)
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
    e = self.config
    if e.scaling == "none":
      return 1.0
    return float(e.scaling_factor) if e.scaling_factor else max(1.0, length / self.train_length)

  def model_config(self, length: int) -> model.TransformerConfig:
    """The model config for an evaluation length, with the configured scaling applied."""
    cfg = self.run.model_config
    if self.config.logn_scaling:
      cfg = dataclasses.replace(cfg, logn_scaling=True)
    if self.config.scaling == "none":
      return cfg
    return dataclasses.replace(
      cfg, scaling=self.config.scaling, scaling_factor=self.scaling_factor(length)
    )

  def model_fn(self, length: int, body: eval_forward.Body, *, key: Hashable) -> Callable[..., Any]:
    """Returns fn(tokens [B, T], positions=None) -> body(model at this length, ...), jitted.

    ``key`` names the body (and its options) for the compilation cache; B must be a multiple of
    :attr:`batch_divisor`.
    """
    cfg = self.model_config(length)
    if (cfg, key) not in self.compiled:
      self.compiled[(cfg, key)] = eval_forward.compile_body(
        body,
        _graphdef(cfg),
        self.params,
        self.run.state.model_state,
        mesh=self.run.mesh,
        rules=self.run.rules,
      )
    return self.compiled[(cfg, key)]

  def uses_long_forward(self, length: int) -> bool:
    """Whether forward passes at this evaluation length run layer by layer (long_forward)."""
    threshold = self.config.long_forward_min_tokens
    return bool(threshold) and length >= threshold

  def _predict_fn(self, length: int) -> Callable[..., dict[str, jax.Array]]:
    chunk = self.config.logits_chunk
    if self.uses_long_forward(length):
      cfg = self.model_config(length)
      if (cfg, ("long", chunk)) not in self.compiled:
        self.compiled[(cfg, ("long", chunk))] = long_forward.LongForward(
          _graphdef(cfg),
          self.params,
          self.run.state.model_state,
          mesh=self.run.mesh,
          rules=self.run.rules,
          options=long_forward.LongForwardOptions(logits_chunk=chunk),
        ).next_token_outputs
      return self.compiled[(cfg, ("long", chunk))]
    return self.model_fn(
      length,
      functools.partial(eval_forward.next_token_outputs, chunk_tokens=chunk),
      key=("predict", chunk),
    )

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
    return eval_forward.batched_call(
      fn, tokens, batch_size=self.batch_rows(tokens.shape[1]), batch_divisor=self.batch_divisor
    )

  def predict_tokens(self, tokens: np.ndarray, length: int | None = None) -> np.ndarray:
    """Greedy predictions aligned with tokens [N, T]: column t predicts tokens[:, t] (column 0: -1).

    Rows are right-padded to a multiple of PAD_MULTIPLE tokens first (causal attention: earlier
    predictions are unchanged), so probes of nearby lengths share one compilation.
    """
    tokens = np.asarray(tokens, np.int32)
    width = tokens.shape[1]
    padded = np.pad(
      tokens, ((0, 0), (0, -width % PAD_MULTIPLE)), constant_values=self.tokenizer.pad_id
    )
    argmax = self.predict(padded, length=width if length is None else length)["argmax"]
    return np.concatenate(
      [np.full((argmax.shape[0], 1), -1, np.int32), argmax[:, : width - 1]], axis=1
    )

  def batch_rows(self, length: int) -> int:
    """Rows per forward pass for sequences of this length: eval.batch_tokens // length (≥ 1)."""
    return max(1, self.config.batch_tokens // length)

  def run_metadata(self) -> dict[str, Any]:
    """Describes the run for tables: encoder, label, scaling, seed, training length, step."""
    cfg = self.run.model_config
    params = dict(cfg.encoder_params)
    defaults = registry.encoder_parameters(cfg.encoder)
    extras = [
      f"{k}={v}"
      for k, v in sorted(params.items())
      if k in defaults and v != defaults[k] and k != "layout"
    ]
    label = cfg.encoder + (f" ({', '.join(extras)})" if extras else "")
    return {
      "encoder": cfg.encoder,
      "encoder_params": params,
      "label": label,
      "scaling": self.config.scaling,
      "scaling_factor": float(self.config.scaling_factor),
      "logn_scaling": bool(self.config.logn_scaling or cfg.logn_scaling),
      "seed": int(self.seed),
      "train_length": self.train_length,
      "step": self.step,
      "rotated_bands": cfg.encoding.num_rotated_bands,
      "head_dim": cfg.head_dim,
      "num_params": model.num_params(cfg),
    }


@functools.lru_cache(maxsize=16)
def _graphdef(cfg: model.TransformerConfig) -> nnx.GraphDef:
  """The graph definition of a model config (no parameters are materialised)."""
  abstract = nnx.eval_shape(lambda: model.Transformer(cfg, rngs=nnx.Rngs(0)))
  graphdef, _ = nnx.split(abstract)
  return graphdef


def batched_nll(
  nll_fn: Callable[..., jax.Array], tokens: np.ndarray, *, batch_size: int, batch_divisor: int = 1
) -> np.ndarray:
  """Runs nll_fn over rows of tokens in batches (padding the last one); returns [N, T-1]."""
  if tokens.shape[0] == 0:
    return np.zeros((0, tokens.shape[1] - 1), np.float32)
  return eval_forward.batched_call(
    nll_fn, tokens, batch_size=batch_size, batch_divisor=batch_divisor
  )


def num_selected(num_windows: int, max_windows: int) -> int:
  """How many windows :func:`select_windows` keeps of num_windows (max_windows 0 = all)."""
  return num_windows if not max_windows else min(num_windows, max_windows)


def select_windows(windows: batches.EvalWindows, max_windows: int) -> np.ndarray:
  """Returns indices of at most max_windows windows spread evenly over all of them (0 = all)."""
  n = windows.num_windows
  if num_selected(n, max_windows) == n:
    return np.arange(n)
  return np.unique(np.linspace(0, n - 1, max_windows).round().astype(np.int64))


def output_dir(config: EvalConfig, workdir: str) -> str:
  """The eval dir: output_dir, else DIR/eval, or DIR/eval_<scaling>[_x<factor>] when scaling."""
  if config.output_dir:
    return os.path.join(workdir, config.output_dir)
  logn = "_logn" if config.logn_scaling else ""
  if config.scaling == "none":
    return os.path.join(workdir, "eval" + logn)
  return os.path.join(
    workdir,
    f"eval_{config.scaling}"
    + (f"_x{config.scaling_factor:g}" if config.scaling_factor else "")
    + logn,
  )


def _load_split(
  data: DataConfig,
  config: EvalConfig,
  tok: tokenizer.Tokenizer,
  model_config: model.TransformerConfig,
  *,
  verbose: bool,
) -> batches.TokenizedSplit:
  """The evaluated split, tokenized (with progress on process 0 when verbose) or from the cache."""
  progress = verbose and jax.process_index() == 0
  return data.load_split(config.split, tok, vocab_size=model_config.vocab_size, progress=progress)


def load_context(
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
) -> EvalContext:
  """Restores the run in workdir at config.step (default: latest) and loads the evaluation split.

  ``optimizer`` is the run's (the checkpoint holds its state).  A workdir without checkpoints
  raises FileNotFoundError before anything is created there.
  """
  if not (epath.Path(workdir) / "checkpoints").exists():
    raise FileNotFoundError(f"no run in workdir {workdir!r} (no checkpoints/ there); train first")
  run = training_setup.setup(
    model_config,
    mesh_config,
    optimizer=optim.make_optimizer(optimizer),
    workdir=workdir,
    step=config.step if config.step >= 0 else None,
    fresh_ok=False,
    distributed=distributed,
  )
  assert run.checkpointer is not None  # setup makes one whenever there is a workdir
  assert run.restored_step is not None  # fresh_ok=False: restored, or setup raised
  run.checkpointer.close()
  tok = data.load_tokenizer()
  split = _load_split(data, config, tok, model_config, verbose=verbose)
  return EvalContext(
    config, run, int(run.restored_step), tok, split, output_dir(config, workdir), seed, verbose
  )


def fresh_context(
  config: EvalConfig,
  model_config: model.TransformerConfig,
  mesh_config: sharding.MeshConfig,
  data: DataConfig,
  eval_dir: str,
  *,
  seed: int = 0,
  init_on: str = "host",
  devices: list[Any] | None = None,
  verbose: bool = False,
) -> EvalContext:
  """An EvalContext around a randomly initialised model (``seed``): baselines and tests.

  ``devices`` (default: all) are the mesh's devices.
  """
  run = training_setup.setup(
    model_config,
    mesh_config,
    optimizer=optax.identity(),
    seed=seed,
    init_on=init_on,
    devices=devices,
    distributed=False,
  )
  tok = data.load_tokenizer()
  split = _load_split(data, config, tok, model_config, verbose=verbose)
  return EvalContext(config, run, 0, tok, split, eval_dir, seed, verbose)
