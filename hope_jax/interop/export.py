"""A run's checkpoint written as a Hugging Face directory that stock ``transformers`` loads and runs.

RoPE runs become ``LlamaForCausalLM``; HoPE runs become ``Phi3ForCausalLM`` with partial rotary
(see :mod:`hope_jax.interop.hf_config`).  The directory holds config.json, the safetensors
(float32; sharded past 2 GiB, with an index) and, when the run's tokenizer is a SentencePiece file,
that file as tokenizer.model.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import jax

from hope_jax.config.resolve import resolve
from hope_jax.data import tokenizer
from hope_jax.interop import hf_config, hf_weights
from hope_jax.interop.convert import load_run_config
from hope_jax.model.config import TransformerConfig


def write_hf_directory(
  config: TransformerConfig, params: Any, out_dir: str, *, max_shard_bytes: int = 2 << 30
) -> dict[str, Any]:
  """Writes params (a Transformer's nnx.Param state) as an HF model directory; returns its config."""
  hf = hf_config.hf_config_from_model(config)
  family = hf["model_type"]
  is_main = jax.process_index() == 0
  if is_main:
    os.makedirs(out_dir, exist_ok=True)
  writer = hf_weights.save_file if is_main else (lambda *args, **kwargs: None)
  hf_weights.write_safetensors(
    out_dir,
    hf_weights.hf_tensors(config, params, family),
    max_shard_bytes=max_shard_bytes,
    write=writer,
  )
  if is_main:
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
      json.dump(hf, f, indent=2, sort_keys=True)
  return hf


def _sentencepiece_file(name: str) -> str | None:
  """The SentencePiece model file behind a data.tokenizer setting, if it is one."""
  path = str(tokenizer.default_model_path()) if name == tokenizer.DEFAULT_NAME else name
  return path if os.path.isfile(path) and path.endswith(".model") else None


def export_run(workdir: str, out_dir: str, *, step: int | None = None) -> dict[str, Any]:
  """Exports a run's checkpoint (latest, or ``step``) as an HF directory; returns the HF config."""
  config = load_run_config(workdir)
  run_config = resolve(config)
  hf_config.hf_config_from_model(run_config.model)  # refuse before reading weights
  run = run_config.setup(workdir, step=step, fresh_ok=False)
  assert run.checkpointer is not None  # setup makes one whenever there is a workdir
  run.checkpointer.close()
  hf = write_hf_directory(run.model_config, run.state.params, out_dir)
  source = _sentencepiece_file(config.data.tokenizer)
  if source and jax.process_index() == 0:
    shutil.copyfile(source, os.path.join(out_dir, "tokenizer.model"))
  return hf
