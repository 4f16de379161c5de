"""Hugging Face ``config.json`` to and from this package's model fields, for the families that map exactly.

Import: ``LlamaForCausalLM`` (Llama 2/3, ``rope_scaling`` none, "linear" or "llama3") and
``MistralForCausalLM`` (no sliding window).  Families with biases (Qwen2's q/k/v) or anything else the
model cannot compute are refused with the field named.  Export: RoPE as Llama; HoPE as Phi-3, whose
partial rotary rotates the first ``r = 2k`` channels of a head (the k kept bands, permuted there by
:mod:`hope_jax.interop.hf_weights`) with base ``base^(2k/head_dim)``, so its k frequencies are HoPE's.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from hope_jax.model.config import TransformerConfig

IMPORT_ARCHITECTURES: dict[str, str] = {
  "LlamaForCausalLM": "llama",
  "MistralForCausalLM": "mistral",
}
# Fields that change nothing the forward pass computes (ids, metadata, dropout at inference).
_INERT = frozenset(
  {
    "_name_or_path",
    "architectures",
    "model_type",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "initializer_range",
    "use_cache",
    "attention_dropout",
    "pretraining_tp",
    "output_attentions",
    "output_hidden_states",
    "return_dict",
    "tokenizer_class",
  }
)
# Fields that must hold one of these values (None: absent also maps).
_REQUIRED_VALUES: dict[str, tuple[Any, ...]] = {
  "hidden_act": ("silu",),
  "attention_bias": (False, None),
  "mlp_bias": (False, None),
  "sliding_window": (None,),
  "use_sliding_window": (False, None),
}
_READ = frozenset(
  {
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "intermediate_size",
    "tie_word_embeddings",
    "rms_norm_eps",
    "rope_theta",
    "rope_scaling",
    "rope_parameters",
    "max_position_embeddings",
  }
)


class UnsupportedCheckpoint(ValueError):
  """A Hugging Face checkpoint (or a run to export) that the model cannot represent exactly."""


def read_hf_config(directory: str) -> dict[str, Any]:
  """Returns the parsed config.json of a Hugging Face model directory."""
  path = os.path.join(directory, "config.json")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no config.json in the Hugging Face directory {directory!r}")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _rope(hf: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
  """Returns (rope_theta, rope scaling dict or None) from either config spelling."""
  params = dict(hf.get("rope_parameters") or {})  # transformers >= 5 keeps theta here
  theta = params.pop("rope_theta", hf.get("rope_theta", 10000.0))
  scaling = hf.get("rope_scaling") or (
    params if params.get("rope_type", "default") != "default" else None
  )
  return float(theta), scaling


def _scaling_fields(scaling: dict[str, Any] | None, max_length: int) -> dict[str, Any]:
  """Returns train_length, scaling and scaling_factor for an HF rope scaling dict."""
  if not scaling:
    return {"train_length": max_length, "scaling": "none", "scaling_factor": 1.0}
  kind = scaling.get("rope_type", scaling.get("type"))
  factor = float(scaling.get("factor", 1.0))
  if kind == "linear":
    return {"train_length": max_length, "scaling": "linear", "scaling_factor": factor}
  if kind == "llama3":
    for key, expected in (("low_freq_factor", 1.0), ("high_freq_factor", 4.0)):
      if float(scaling.get(key, expected)) != expected:
        raise UnsupportedCheckpoint(
          f"rope_scaling.{key}={scaling[key]!r} does not map (the model's "
          f"llama3 scaling uses {expected})"
        )
    return {
      "train_length": int(scaling["original_max_position_embeddings"]),
      "scaling": "llama3",
      "scaling_factor": factor,
    }
  raise UnsupportedCheckpoint(
    f"rope_scaling type {kind!r} does not map; supported: none, linear, llama3"
  )


def model_fields_from_hf(hf: dict[str, Any]) -> dict[str, Any]:
  """Returns the run config's model fields for an HF config, or raises naming what does not map."""
  architectures = hf.get("architectures") or []
  if len(architectures) != 1 or architectures[0] not in IMPORT_ARCHITECTURES:
    raise UnsupportedCheckpoint(
      f"architectures={architectures!r} is not supported; converts {sorted(IMPORT_ARCHITECTURES)}"
    )
  for key, allowed in _REQUIRED_VALUES.items():
    if hf.get(key) not in allowed:
      raise UnsupportedCheckpoint(
        f"config field {key}={hf[key]!r} does not map (the model needs "
        f"{' or '.join(map(repr, allowed))})"
      )
  unknown = sorted(set(hf) - _INERT - _READ - set(_REQUIRED_VALUES))
  if unknown:
    raise UnsupportedCheckpoint(f"config field(s) {unknown} do not map onto the model")
  for key in (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
  ):
    if key not in hf:
      raise UnsupportedCheckpoint(f"config field {key} is missing")
  heads = int(hf["num_attention_heads"])
  theta, scaling = _rope(hf)
  return {
    "vocab_size": int(hf["vocab_size"]),
    "num_layers": int(hf["num_hidden_layers"]),
    "embed_dim": int(hf["hidden_size"]),
    "num_heads": heads,
    "num_kv_heads": int(hf.get("num_key_value_heads") or heads),
    "head_dim": int(hf.get("head_dim") or hf["hidden_size"] // heads),
    "mlp_dim": int(hf["intermediate_size"]),
    "tie_embeddings": bool(hf.get("tie_word_embeddings", False)),
    "norm_eps": float(hf.get("rms_norm_eps", 1e-6)),
    "encoder": "rope",
    "encoder_params": {"base": theta, "layout": "split_half"},
    **_scaling_fields(scaling, int(hf["max_position_embeddings"])),
  }


def rotated_bands(config: TransformerConfig) -> int:
  """How many leading bands a rotary config rotates; raises unless they are exactly RoPE's first k."""
  enc = config.encoding
  if enc.bias is not None or enc.name not in ("rope", "hope", "p_rope"):
    raise UnsupportedCheckpoint(
      f"encoder={config.encoder!r} does not export; rope, hope and p_rope (RoPE's fastest bands) do"
    )
  kept = enc.num_rotated_bands
  if kept == 0:
    raise UnsupportedCheckpoint(
      f"encoder={config.encoder!r} rotates no band (NoPE) and does not export"
    )
  return kept


def hf_config_from_model(config: TransformerConfig) -> dict[str, Any]:
  """Returns the config.json of the HF model that computes what ``config`` does (Llama or Phi-3)."""
  if config.logn_scaling:
    raise UnsupportedCheckpoint("logn_scaling=True does not export (no HF family scales queries)")
  if config.scaling not in ("none", "linear", "llama3"):
    raise UnsupportedCheckpoint(
      f"scaling={config.scaling!r} does not export; none, linear, llama3 do"
    )
  kept, base = rotated_bands(config), float(config.encoding.base)
  common = {
    "vocab_size": config.vocab_size,
    "hidden_size": config.embed_dim,
    "num_hidden_layers": config.num_layers,
    "num_attention_heads": config.num_heads,
    "num_key_value_heads": config.num_kv_heads,
    "intermediate_size": config.mlp_dim,
    "tie_word_embeddings": config.tie_embeddings,
    "rms_norm_eps": config.norm_eps,
    "hidden_act": "silu",
    "max_position_embeddings": config.train_length,
    "torch_dtype": "float32",
    "attention_bias": False,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
  }
  scaling = None
  if config.scaling == "linear":
    scaling = {"rope_type": "linear", "factor": config.scaling_factor}
  elif config.scaling == "llama3":
    scaling = {
      "rope_type": "llama3",
      "factor": config.scaling_factor,
      "low_freq_factor": 1.0,
      "high_freq_factor": 4.0,
      "original_max_position_embeddings": config.train_length,
    }
  if kept == config.head_dim // 2:  # every band: RoPE, exactly Llama
    return {
      **common,
      "architectures": ["LlamaForCausalLM"],
      "model_type": "llama",
      "head_dim": config.head_dim,
      "rope_theta": base,
      "rope_scaling": scaling,
      "mlp_bias": False,
    }
  if config.head_dim * config.num_heads != config.embed_dim:
    raise UnsupportedCheckpoint(
      f"head_dim={config.head_dim} with num_heads={config.num_heads} "
      f"and embed_dim={config.embed_dim}: Phi-3 (HoPE's export) needs "
      "head_dim = embed_dim / num_heads"
    )
  if scaling is not None:
    raise UnsupportedCheckpoint(f"scaling={config.scaling!r} with HoPE does not export")
  fraction = 2 * kept / config.head_dim
  rotated = fraction
  while int(config.head_dim * rotated) < 2 * kept:  # Phi-3 rotates int(head_dim · factor) channels
    rotated = math.nextafter(rotated, 1.0)
  return {
    **common,
    "architectures": ["Phi3ForCausalLM"],
    "model_type": "phi3",
    "partial_rotary_factor": rotated,
    "rope_theta": base**fraction,
    "rope_scaling": None,
    "original_max_position_embeddings": config.train_length,
    "sliding_window": None,
    "resid_pdrop": 0.0,
    "embd_pdrop": 0.0,
    "attention_dropout": 0.0,
  }
