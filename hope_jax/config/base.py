"""The base ml_collections config every config file in configs/ starts from, and its validation.

A config file is a module with ``get_config(arg: str | None = None) -> ConfigDict`` that calls
:func:`base_config` and changes fields; the returned dict is locked, so a misspelt key fails on the
command line (``--config.train.stepz=5``) before anything is compiled, and :func:`validate` checks
values before the model is built.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from hope_jax.positional import registry
from hope_jax.training import step as train_step

# Every parameter any registered encoder takes, with the value meaning "the encoder's default".
ENCODER_PARAM_DEFAULTS: dict[str, Any] = {
    "base": 10000.0,
    "layout": "split_half",
    "num_kept_bands": None,  # HoPE: explicit cutoff; None = the ≥ min_periods rule
    "min_periods": 1.0,  # HoPE: full periods a kept band completes within train_length
    "p": 0.75,  # p-RoPE: fraction of the fastest bands kept
    "fraction": 0.25,  # partial rotary: fraction of head_dim rotated
}


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
  c.model.projection_impl = "auto"  # "auto" | "xla" | "pallas" (q/k rotation in the product, Hopper)
  c.model.logits_dtype = "float32"  # "float32" | "bfloat16" (the head's output; loss in float32)
  c.model.logn_scaling = False  # queries × max(1, log(n+1)/log(train_length)): no-op within L
  c.model.norm_eps = 1e-6
  c.model.init_std = 0.02
  c.model.encoder = "rope"  # a name in hope_jax.positional.registry: rope hope nope p_rope partial_rope alibi kerple
  c.model.encoder_params = ml_collections.ConfigDict(dict(ENCODER_PARAM_DEFAULTS))
  c.model.train_length = 0  # 0 = data.seq_len; HoPE's L, always the training length
  c.model.scaling = "none"  # the model's own context extension (e.g. a converted Llama 3.1's "llama3")
  c.model.scaling_factor = 1.0

  c.data = ml_collections.ConfigDict()
  c.data.source = "embedded"  # "embedded" | "local" | "tfds"
  c.data.path = ""  # local: a directory with {train,validation}.jsonl.xz, or files
  c.data.name = ""  # tfds: a catalog name such as "pg19"
  c.data.text_field = ""  # override the text field ("" = the source's default)
  c.data.data_dir = ""  # tfds data dir ("" = TFDS default); gs:// paths work
  c.data.validation_percent = 1.0  # hash split for sources without a validation split
  c.data.tokenizer = "default"  # "default" (shipped) or a path to a SentencePiece model
  c.data.cache_dir = ""  # token cache ("" = $HOPE_JAX_CACHE or ~/.cache/hope_jax)
  c.data.seq_len = 128
  c.data.with_segments = False  # mask attention across packed documents

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
  c.train.peak_flops_per_device = 0.0  # 0 = look the device up in hope_jax.training.metrics.PEAK_FLOPS
  # Where the initial state is computed: "host" (compiled for the CPU, then copied shard by shard;
  # needs the whole state in host memory) or "device" (jitted on the mesh and born sharded; on an
  # H100 at 342M it had not finished after 4.5 minutes, where "host" took 13.5 s: RESULTS.md §4).
  c.train.init_on = "host"
  c.train.stop_after = 0  # stop (with a checkpoint) after this step, as a preemption would; 0 = never

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # -1 = all devices not used by the other axes
  c.mesh.fsdp = 1
  c.mesh.tensor = 1
  c.mesh.rules = ml_collections.ConfigDict(dict(
      batch=("data", "fsdp"), embed="fsdp", vocab="tensor", heads="tensor", kv_heads="tensor",
      mlp="tensor", head_dim=None))

  # Evaluation suite (python -m hope_jax evaluate; hope_jax/evaluate.py, evals_probes.py,
  # evals_attention.py).  Lengths are multiples of the training length L; defaults suit CPU-tiny
  # models.  Every evaluation runs its model at the length it feeds, so eval.scaling applies to all.
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
  # "perplexity": non-overlapping windows of validation documents, one forward pass each; lengths
  # no document reaches are skipped.
  c.eval.lengths = (1, 2, 4, 8, 16, 32)  # multiples of L
  c.eval.max_windows = 64  # per length, spread over all windows; 0 = all
  c.eval.position_buckets = 16  # mean NLL over this many equal position ranges of a window
  # "copy": a segment, a gap, the segment again; greedy next-token accuracy on the second copy.
  c.eval.copy_segment_length = 16  # tokens per segment
  c.eval.copy_gaps = (0.0, 0.5, 1.0, 2.0, 4.0)  # gap between the copies, multiples of L
  c.eval.copy_sources = ("text", "random")  # "text" = validation-split spans, "random" = ids
  c.eval.copy_examples = 8  # per (source, gap)
  # "passkey": a key hidden in filler at a depth; all key digits must be greedy-decoded right.
  c.eval.passkey_lengths = (1, 2, 4, 8)  # multiples of L; lengths below ~80 tokens are skipped
  c.eval.passkey_depths = (0.0, 0.25, 0.5, 0.75, 1.0)  # needle position, fraction of the filler
  c.eval.passkey_keys = 4  # random keys per (length, depth) cell
  # "recall": key->value demonstrations, filler, then queries; a query counts when all of its
  # value tokens are greedy-predicted right.
  c.eval.recall_pairs = (2, 4, 8)  # number of demonstrations
  c.eval.recall_distances = (0.5, 1.0, 2.0, 4.0)  # demonstration-to-query distance, multiples of L
  c.eval.recall_queries = 2  # queries per example (at most the number of pairs)
  c.eval.recall_examples = 8  # per (source, pairs, distance)
  c.eval.recall_sources = ("words", "random")  # "key: value" word lines, or random-token pairs
  # "attention": attention probability and per-band q·k contributions versus relative distance
  # (XLA reference path, memory quadratic in the length: keep it small).
  c.eval.attention_length = 2  # window length, multiple of L
  c.eval.attention_windows = 4  # windows, one per batch shard at a time
  c.eval.attention_buckets = 16  # log-spaced relative-distance buckets (distance 0 its own)
  c.eval.attention_position_offset = 0  # positions start here (probes absolute-position effects)
  return c


def train_length(config: ml_collections.ConfigDict) -> int:
  """Returns the training length HoPE uses: model.train_length, or data.seq_len when it is 0."""
  return int(config.model.train_length or config.data.seq_len)


def encoder_kwargs(name: str, params: ml_collections.ConfigDict | dict) -> dict[str, Any]:
  """Returns the parameters the encoder ``name`` takes; a set parameter it does not take is an error."""
  accepted = registry.encoder_parameters(name)
  kwargs = {}
  for key, value in dict(params).items():
    if key in accepted:
      kwargs[key] = value
    elif key not in ENCODER_PARAM_DEFAULTS:
      raise ValueError(f"model.encoder_params.{key} is not a parameter of any encoder")
    elif value != ENCODER_PARAM_DEFAULTS[key]:
      raise ValueError(f"model.encoder_params.{key}={value!r} is set, but encoder {name!r} "
                       f"takes only {sorted(accepted)}")
  return kwargs


def _positive_int(config, path: str, *, allow_zero: bool = False) -> None:
  value = config
  for part in path.split("."):
    value = value[part]
  ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 if allow_zero
                                                                    else value > 0)
  if not ok:
    raise ValueError(f"config.{path} must be a {'non-negative' if allow_zero else 'positive'} "
                     f"integer, got {value!r}")


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks values that types alone cannot, naming the field; call before building anything."""
  for path in ("model.vocab_size", "model.num_layers", "model.embed_dim", "model.num_heads",
               "model.num_kv_heads", "model.mlp_dim", "data.seq_len", "train.steps",
               "train.batch_size", "train.grad_accum_steps", "train.log_every",
               "train.checkpoint_every", "train.keep_checkpoints"):
    _positive_int(config, path)
  for path in ("model.head_dim", "model.train_length", "train.warmup_steps", "train.stop_after"):
    _positive_int(config, path, allow_zero=True)
  t = config.train
  if not t.learning_rate > 0:
    raise ValueError(f"config.train.learning_rate must be > 0, got {t.learning_rate!r}")
  if not 0 <= t.min_lr_ratio <= 1:
    raise ValueError(f"config.train.min_lr_ratio must lie in [0, 1], got {t.min_lr_ratio!r}")
  if t.weight_decay < 0:
    raise ValueError(f"config.train.weight_decay must be >= 0, got {t.weight_decay!r}")
  if t.batch_size % t.grad_accum_steps:
    raise ValueError(f"config.train.batch_size={t.batch_size} is not divisible by "
                     f"config.train.grad_accum_steps={t.grad_accum_steps}")
  if t.init_on not in train_step.INIT_PLACES:
    raise ValueError(f"config.train.init_on must be one of {train_step.INIT_PLACES}, got "
                     f"{t.init_on!r}")
  if config.distributed not in ("auto", "on", "off"):
    raise ValueError(f"config.distributed must be 'auto', 'on' or 'off', got "
                     f"{config.distributed!r}")
  if config.data.source not in ("embedded", "local", "tfds"):
    raise ValueError(f"config.data.source must be 'embedded', 'local' or 'tfds', got "
                     f"{config.data.source!r}")
  for axis in ("data", "fsdp", "tensor"):
    size = config.mesh[axis]
    if not isinstance(size, int) or (size <= 0 and size != -1):
      raise ValueError(f"config.mesh.{axis} must be a positive integer or -1, got {size!r}")
  if not config.eval.lengths or any(m <= 0 for m in config.eval.lengths):
    raise ValueError(f"config.eval.lengths must be positive multiples, got {config.eval.lengths!r}")
  # The encoder: name, parameters and values (the registry raises naming the field).
  registry.build_encoding(
      config.model.encoder, head_dim=config.model.head_dim or
      config.model.embed_dim // config.model.num_heads, num_heads=config.model.num_heads,
      train_length=train_length(config),
      params=encoder_kwargs(config.model.encoder, config.model.encoder_params))


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
  config.model.update(dict(num_layers=layers, embed_dim=dim, num_heads=heads,
                           num_kv_heads=kv_heads, mlp_dim=mlp, tie_embeddings=tie))
  return config


def set_encoder(config: ml_collections.ConfigDict, name: str, **params) -> ml_collections.ConfigDict:
  """Selects an encoder by registry name and sets its parameters; returns the config."""
  registry.encoder_parameters(name)  # raises on an unknown name
  config.model.encoder = name
  for key, value in params.items():
    if key not in ENCODER_PARAM_DEFAULTS:
      raise ValueError(f"model.encoder_params has no field {key!r}")
    config.model.encoder_params[key] = value
  return config


def accelerator_config(size: str, encoder: str | None, *, seq_len: int, batch_size: int,
                       learning_rate: float, steps: int,
                       shard_params: bool = False) -> ml_collections.ConfigDict:
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
  config.train.update(dict(steps=steps, batch_size=batch_size, learning_rate=learning_rate,
                           warmup_steps=min(2000, steps // 10), log_every=100,
                           checkpoint_every=1000, keep_checkpoints=3))
  return config
