"""The base ml_collections config every config file in configs/ starts from.

A config file is a module with ``get_config(arg: str | None = None) -> ConfigDict`` that calls
:func:`base_config` and changes fields; the returned dict is locked, so a misspelt key fails on the
command line (``--config.train.stepz=5``) before anything is compiled, and
:func:`hope_jax.config.resolve.resolve` turns it into typed configs, checking every value once.
"""

from __future__ import annotations

import importlib.util
import os
import types

import ml_collections
from ml_collections import config_dict

from hope_jax.positional import registry


def encoder_params_config() -> ml_collections.ConfigDict:
  """Every parameter of any registered encoder with its registry default (None: a typed placeholder)."""
  params = ml_collections.ConfigDict()
  for name in registry.encoder_names():
    for key, default in registry.encoder_parameters(name).items():
      if key not in params:
        params[key] = (
          config_dict.placeholder(registry.parameter_type(name, key))
          if default is None
          else default
        )
  return params


def base_config() -> ml_collections.ConfigDict:
  """Returns the default config (a tiny model on the embedded corpus); config files edit it."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.distributed = "auto"  # "auto" | "on" | "off": jax.distributed.initialize() on several processes

  c.model = ml_collections.ConfigDict()
  c.model.vocab_size = 16384  # must match the tokenizer
  c.model.num_layers = 2
  c.model.embed_dim = 128
  c.model.num_heads = 4
  c.model.num_kv_heads = 4
  c.model.head_dim = 0  # 0 = embed_dim // num_heads
  c.model.mlp_dim = 384
  c.model.tie_embeddings = True
  c.model.dtype = "float32"  # computation dtype: "bfloat16" on accelerators
  c.model.param_dtype = "float32"
  c.model.remat = "none"  # rematerialisation per block: "none" | "full" | "dots" | "dots_no_batch"
  c.model.attention_impl = "auto"  # "auto" | "cudnn" | "xla" | "splash"
  c.model.norm_impl = "auto"  # "auto" | "xla" | "pallas" (fused add + RMSNorm kernels on GPU)
  c.model.loss_impl = "auto"  # "auto" | "xla" | "pallas" (one-pass logsumexp kernel on GPU)
  c.model.projection_impl = (
    "auto"  # "auto" | "xla" | "pallas" (q/k rotation in the product, Hopper)
  )
  c.model.logits_dtype = "float32"  # "float32" | "bfloat16" (the head's output; loss in float32)
  c.model.logn_scaling = False  # queries × max(1, log(n+1)/log(train_length)): no-op within L
  c.model.norm_eps = 1e-6
  c.model.init_std = 0.02
  c.model.encoder = "rope"  # a name in hope_jax.positional.registry: rope hope nope p_rope partial_rope alibi kerple
  # HoPE: num_kept_bands (explicit cutoff; None = the ≥ min_periods rule), min_periods (full
  # periods a kept band completes within train_length); p-RoPE: p (fraction of the fastest bands
  # kept); partial rotary: fraction (of head_dim rotated).  Defaults are the registry's.
  c.model.encoder_params = encoder_params_config()
  c.model.train_length = 0  # 0 = data.seq_len; HoPE's L, always the training length
  c.model.scaling = (
    "none"  # the model's own context extension (e.g. a converted Llama 3.1's "llama3")
  )
  c.model.scaling_factor = 1.0

  c.data = ml_collections.ConfigDict()
  c.data.source = "embedded"  # "embedded" | "local" | "tfds" | "source_tree"
  c.data.path = ""  # local: a directory with {train,validation}.jsonl.xz, or files
  c.data.name = ""  # tfds: a catalog name such as "pg19"
  c.data.text_field = ""  # override the text field ("" = the source's default)
  c.data.data_dir = ""  # tfds data dir ("" = TFDS default); gs:// paths work
  c.data.validation_percent = 1.0  # hash split for sources without a validation split
  c.data.tokenizer = "default"  # "default" (shipped) or a path to a SentencePiece model
  c.data.cache_dir = ""  # token cache ("" = $HOPE_JAX_CACHE or ~/.cache/hope_jax)
  c.data.seq_len = 128
  c.data.with_segments = False  # mask attention across packed documents
  # source_tree (path = a directory, or sysconfig:stdlib / sysconfig:purelib): one document per
  # top-level package; what it reads:
  c.data.suffixes = ".py"  # comma-separated file-name suffixes
  c.data.max_file_bytes = 500_000  # larger (generated) files are left out and listed
  c.data.exclude = ""  # comma-separated globs of paths or names, e.g. "test,tests"

  c.train = ml_collections.ConfigDict()
  c.train.steps = 200
  c.train.batch_size = 16  # global batch, in sequences
  c.train.grad_accum_steps = 1
  c.train.learning_rate = 3e-3
  c.train.warmup_steps = 20
  c.train.min_lr_ratio = 0.1  # cosine decays to learning_rate * min_lr_ratio
  c.train.weight_decay = 0.1  # not applied to norms, biases and other vectors
  c.train.b1 = 0.9
  c.train.b2 = 0.95
  c.train.eps = 1e-8
  c.train.clip_norm = 1.0
  c.train.log_every = 10
  c.train.checkpoint_every = 100
  c.train.keep_checkpoints = 2
  c.train.async_checkpoints = True
  c.train.tensorboard = True
  c.train.peak_flops_per_device = (
    0.0  # 0 = look the device up in hope_jax.training.metrics.PEAK_FLOPS
  )
  # Where the initial state is computed: "host" (compiled for the CPU, then copied shard by shard;
  # needs the whole state in host memory) or "device" (jitted on the mesh and born sharded; on an
  # H100 at 342M it had not finished after 4.5 minutes, where "host" took 13.5 s: RESULTS.md §1.5).
  c.train.init_on = "host"
  c.train.stop_after = (
    0  # stop (with a checkpoint) after this step, as a preemption would; 0 = never
  )

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1 = all devices not used by the other axes
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  c.mesh.rules = ml_collections.ConfigDict(
    dict(
      batch=("data", "fsdp"),
      embed="fsdp",
      vocab="tensor",
      heads="tensor",
      kv_heads="tensor",
      mlp="tensor",
      head_dim=None,
    )
  )

  # Evaluation suite (python -m hope_jax evaluate; hope_jax/evaluation/).  Lengths, gaps and
  # distances are multiples of the training length L; defaults suit CPU-tiny models.  Every
  # evaluation runs its model at the length it feeds, so eval.scaling applies to all.  One sub-dict
  # per evaluation: its fields are those of hope_jax.evaluation.config.<Name>Spec.
  c.eval = ml_collections.ConfigDict()
  c.eval.split = "validation"
  c.eval.evaluations = ("perplexity", "copy", "passkey", "recall", "attention")
  c.eval.step = -1  # checkpoint step; -1 = latest
  c.eval.output_dir = ""  # under the workdir; "" = "eval", or "eval_<scaling>[_x<factor>]"
  c.eval.scaling = "none"  # "none" | "linear" | "ntk" | "yarn" | "llama3"
  c.eval.scaling_factor = 0.0  # 0 = evaluation length / training length
  c.eval.logn_scaling = False  # evaluate with log-length query scaling (model.logn_scaling)
  c.eval.batch_tokens = 16384  # sequences per forward pass = max(1, batch_tokens // length)
  c.eval.logits_chunk = 8192  # the output head runs over slices of this many tokens (memory)
  # Windows of at least this many tokens run layer by layer (hope_jax.evaluation.long_forward:
  # memory ~ one block's activations, so 1M-token windows fit one GPU); 0 = never.
  c.eval.long_forward_min_tokens = 32768
  c.eval.probe_seed = 0  # seeds every probe's examples
  # Non-overlapping windows of validation documents; lengths no document reaches are skipped.
  c.eval.perplexity = ml_collections.ConfigDict(
    dict(lengths=(1, 2, 4, 8, 16, 32), max_windows=64, position_buckets=16)
  )
  # A segment, a gap, the segment again; greedy next-token accuracy on the second copy.
  c.eval.copy = ml_collections.ConfigDict(
    dict(segment_length=16, gaps=(0.0, 0.5, 1.0, 2.0, 4.0), sources=("text", "random"), examples=8)
  )
  # A key hidden in filler at a depth; all key digits must be greedy-decoded right.
  c.eval.passkey = ml_collections.ConfigDict(
    dict(lengths=(1, 2, 4, 8), depths=(0.0, 0.25, 0.5, 0.75, 1.0), keys=4)
  )
  # key->value demonstrations, filler, then queries (all value tokens greedy-predicted right).
  c.eval.recall = ml_collections.ConfigDict(
    dict(
      pairs=(2, 4, 8),
      distances=(0.5, 1.0, 2.0, 4.0),
      queries=2,
      examples=8,
      sources=("words", "random"),
    )
  )
  # Attention probability and per-band q·k contributions versus relative distance (XLA path,
  # memory quadratic in the length: keep it small).
  c.eval.attention = ml_collections.ConfigDict(
    dict(length=2, windows=4, buckets=16, position_offset=0)
  )
  return c


# Model presets: (num_layers, embed_dim, num_heads, num_kv_heads, mlp_dim, tie_embeddings), with the
# shipped 16,384-piece vocabulary.  Parameter counts include embeddings.
MODEL_SIZES: dict[str, tuple[int, int, int, int, int, bool]] = {
  "tiny": (2, 128, 4, 4, 384, True),  # 2.5M, mostly embeddings: CPU tests and the demo
  "20m": (8, 384, 6, 6, 1024, True),  # 20.5M
  "110m": (12, 768, 12, 12, 2048, False),  # 110M, the PyTorch peer's shape
  "340m": (24, 1024, 16, 16, 2816, False),  # 342M, the peer's larger shape
  "1b": (16, 2048, 32, 8, 8192, True),  # 1.0B, Llama-3.2-1B-like (GQA 32/8)
  "3b": (28, 3072, 24, 8, 8192, True),  # 2.9B, Llama-3.2-3B-like (GQA 24/8)
}


def set_model_size(config: ml_collections.ConfigDict, size: str) -> ml_collections.ConfigDict:
  """Sets the model fields of a preset in MODEL_SIZES; returns the config."""
  if size not in MODEL_SIZES:
    raise ValueError(f"model size must be one of {sorted(MODEL_SIZES)}, got size={size!r}")
  layers, dim, heads, kv_heads, mlp, tie = MODEL_SIZES[size]
  config.model.update(
    dict(
      num_layers=layers,
      embed_dim=dim,
      num_heads=heads,
      num_kv_heads=kv_heads,
      mlp_dim=mlp,
      tie_embeddings=tie,
    )
  )
  return config


def set_encoder(
  config: ml_collections.ConfigDict, name: str, **params
) -> ml_collections.ConfigDict:
  """Selects an encoder by registry name and sets its parameters; returns the config."""
  registry.encoder_parameters(name)  # raises on an unknown name
  config.model.encoder = name
  for key, value in params.items():
    if key not in config.model.encoder_params:
      raise ValueError(f"model.encoder_params has no field {key!r}")
    config.model.encoder_params[key] = value
  return config


def accelerator_config(
  size: str,
  encoder: str | None,
  *,
  seq_len: int,
  batch_size: int,
  learning_rate: float,
  steps: int,
  shard_params: bool = False,
) -> ml_collections.ConfigDict:
  """A preset for accelerators: bfloat16 compute, the size's model, and its training schedule.

  ``shard_params`` shards parameters and optimizer state over all devices (fsdp) and
  rematerialises each block, for models whose state does not fit one device.
  """
  config = base_config()
  set_model_size(config, size)
  set_encoder(config, encoder or "rope")
  config.model.dtype = "bfloat16"
  if shard_params:
    config.model.remat = "full"
    config.mesh.update(dict(fsdp=-1, data=1))
  config.data.seq_len = seq_len
  config.train.update(
    dict(
      steps=steps,
      batch_size=batch_size,
      learning_rate=learning_rate,
      warmup_steps=min(2000, steps // 10),
      log_every=100,
      checkpoint_every=1000,
      keep_checkpoints=3,
    )
  )
  return config


def sibling_config(config_file: str, name: str) -> types.ModuleType:
  """Imports the config file ``name`` beside ``config_file`` (a config built on another's)."""
  path = os.path.join(os.path.dirname(os.path.abspath(config_file)), name)
  spec = importlib.util.spec_from_file_location(os.path.splitext(name)[0] + "_config", path)
  if spec is None or spec.loader is None:
    raise FileNotFoundError(f"no config file {path!r}")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
