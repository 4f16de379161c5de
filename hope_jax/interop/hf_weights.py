"""Hugging Face safetensors weights to and from the Transformer's parameters, one tensor slice at a time.

Reading goes through ``safetensors``' NumPy API (no PyTorch): each device's shard of each parameter
is read as a slice of its tensor straight from the file, so no process ever holds a whole model.
Names and layouts follow Llama (``model.layers.{i}.self_attn.q_proj.weight`` [heads·head_dim,
embed], ...); Phi-3 fuses q/k/v and gate/up.  q and k channels are written in the HF head order
:func:`hf_channel_order`, which moves the rotated bands' pairs where the HF family rotates them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import ml_dtypes  # registers bfloat16 with NumPy, so BF16 tensors read as NumPy arrays
import numpy as np
from jax.experimental import multihost_utils
from safetensors import safe_open
from safetensors.numpy import save_file

from hope_jax.interop.hf_config import UnsupportedCheckpoint
from hope_jax.model.config import TransformerConfig

del ml_dtypes
# Tensors that some checkpoints carry and that hold nothing the model learns.
_DERIVED_SUFFIXES = ("rotary_emb.inv_freq",)


def param_map(config: TransformerConfig) -> dict[str, tuple[str, str]]:
  """Returns {our parameter path: (HF tensor name, kind)} for a Llama-layout checkpoint.

  Kinds: "copy" (same array), "transpose" (ours = W.T), "heads_out" (ours [d, n, h] = W.T with
  W [n·h, d]) and "heads_in" (ours [n, h, d] = W.T with W [d, n·h]).
  """
  names = {
    "embedding": ("model.embed_tokens.weight", "copy"),
    "final_norm.scale": ("model.norm.weight", "copy"),
  }
  if not config.tie_embeddings:
    names["lm_head"] = ("lm_head.weight", "transpose")
  for i in range(config.num_layers):
    hf, ours = f"model.layers.{i}.", f"blocks.{i}."
    names.update(
      {
        ours + "attn_norm.scale": (hf + "input_layernorm.weight", "copy"),
        ours + "mlp_norm.scale": (hf + "post_attention_layernorm.weight", "copy"),
        ours + "attn.q_proj": (hf + "self_attn.q_proj.weight", "heads_out"),
        ours + "attn.k_proj": (hf + "self_attn.k_proj.weight", "heads_out"),
        ours + "attn.v_proj": (hf + "self_attn.v_proj.weight", "heads_out"),
        ours + "attn.o_proj": (hf + "self_attn.o_proj.weight", "heads_in"),
        ours + "mlp.gate": (hf + "mlp.gate_proj.weight", "transpose"),
        ours + "mlp.up": (hf + "mlp.up_proj.weight", "transpose"),
        ours + "mlp.down": (hf + "mlp.down_proj.weight", "transpose"),
      }
    )
  return names


def path_name(path: tuple[Any, ...]) -> str:
  """'blocks.0.attn.q_proj' for a params-tree key path (its trailing '.value' dropped)."""
  keys = [getattr(k, "key", getattr(k, "name", None)) for k in path]
  return ".".join(str(k) for k in keys if k != "value")


def hf_channel_order(config: TransformerConfig) -> np.ndarray:
  """Our head channel for each HF q/k head channel: HF rotates pairs (j, j + r/2) of its first r.

  The k rotating bands' pair members come first (first members, then second members), then the
  unrotated bands' members; identity for split-half RoPE.
  """
  d = config.head_dim
  bands = np.arange(d // 2)
  first, second = (
    (bands, bands + d // 2)
    if config.encoding.layout == "split_half"
    else (2 * bands, 2 * bands + 1)
  )
  kept = config.encoding.num_rotated_bands
  return np.concatenate([first[:kept], second[:kept], first[kept:], second[kept:]])


# ----------------------------------------------------------------------------------------------
# Reading.


class SafetensorsReader:
  """Opens a Hugging Face directory's safetensors (one file or an index of shards) lazily."""

  def __init__(self, directory: str):
    """Finds which file holds each tensor; raises naming a missing file."""
    self.directory = directory
    index = os.path.join(directory, "model.safetensors.index.json")
    single = os.path.join(directory, "model.safetensors")
    if os.path.isfile(index):
      with open(index, encoding="utf-8") as f:
        self.files = dict(json.load(f)["weight_map"])
    elif os.path.isfile(single):
      with safe_open(single, framework="np") as f:
        self.files = {name: "model.safetensors" for name in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    else:
      raise FileNotFoundError(
        f"no model.safetensors or model.safetensors.index.json in {directory!r}"
      )
    for file in sorted(set(self.files.values())):
      if not os.path.isfile(os.path.join(directory, file)):
        raise FileNotFoundError(f"shard {file!r} named by the index is missing from {directory!r}")
    self._open: dict[str, Any] = {}

  def slice(self, name: str) -> Any:
    """Returns the safetensors slice object of a tensor (shape via get_shape(), NumPy on indexing)."""
    if name not in self.files:
      raise UnsupportedCheckpoint(f"tensor {name!r} is missing from {self.directory!r}")
    file = self.files[name]
    if file not in self._open:
      self._open[file] = safe_open(os.path.join(self.directory, file), framework="np")
    return self._open[file].get_slice(name)

  def close(self) -> None:
    """Closes the open files."""
    for handle in self._open.values():
      handle.__exit__(None, None, None)
    self._open.clear()


def _bounds(index: tuple[slice, ...], shape: tuple[int, ...]) -> list[tuple[int, int]]:
  """(start, stop) per axis of a shard index (steps are 1 for NamedSharding shards)."""
  return [s.indices(n)[:2] for s, n in zip(index, shape)]


def read_block(
  tensor: Any, kind: str, index: tuple[slice, ...], shape: tuple[int, ...]
) -> np.ndarray:
  """Reads our parameter's block ``index`` (of ``shape``) from an HF tensor slice, reading no more rows."""
  b = _bounds(index, shape)
  if kind == "copy":
    return tensor[tuple(slice(*x) for x in b)]
  if kind == "transpose":
    return tensor[slice(*b[1]), slice(*b[0])].T
  if kind == "heads_out":  # ours [d, n, h] <- W [n·h, d]
    (d0, d1), (n0, n1), (h0, h1) = b
    h = shape[2]
    block = tensor[n0 * h : n1 * h, d0:d1].T.reshape(d1 - d0, n1 - n0, h)
    return block[:, :, h0:h1]
  if kind == "heads_in":  # ours [n, h, d] <- W [d, n·h]
    (n0, n1), (h0, h1), (d0, d1) = b
    h = shape[1]
    block = tensor[d0:d1, n0 * h : n1 * h].T.reshape(n1 - n0, h, d1 - d0)
    return block[:, h0:h1, :]
  raise ValueError(f"unknown tensor kind {kind!r}")


def hf_shape(kind: str, shape: tuple[int, ...]) -> tuple[int, ...]:
  """The HF tensor's shape for our parameter's shape."""
  if kind == "copy":
    return tuple(shape)
  if kind == "transpose":
    return (shape[1], shape[0])
  if kind == "heads_out":
    return (shape[1] * shape[2], shape[0])
  return (shape[2], shape[0] * shape[1])


def _check_names(reader: SafetensorsReader, expected: set[str], config: TransformerConfig) -> None:
  """Raises naming a checkpoint tensor the model has no place for (e.g. a bias)."""
  extra = {n for n in reader.files if n not in expected and not n.endswith(_DERIVED_SUFFIXES)}
  if config.tie_embeddings:
    extra.discard("lm_head.weight")  # some tied checkpoints store the shared table twice
  if extra:
    raise UnsupportedCheckpoint(
      f"tensor(s) {sorted(extra)[:5]} in {reader.directory!r} do not map onto the model"
    )


def read_params(directory: str, config: TransformerConfig, abstract_params: Any) -> Any:
  """Returns the params tree (abstract_params' structure and shardings) filled from an HF directory.

  abstract_params: ShapeDtypeStructs that carry shardings; each addressable shard is read as
  one slice of its HF tensor and cast to the parameter dtype.
  """
  names = param_map(config)
  reader = SafetensorsReader(directory)
  _check_names(reader, {hf for hf, _ in names.values()}, config)

  def load(path, leaf: jax.ShapeDtypeStruct) -> jax.Array:
    name = path_name(path)
    if name not in names:
      raise UnsupportedCheckpoint(f"parameter {name!r} has no Hugging Face tensor")
    hf, kind = names[name]
    tensor = reader.slice(hf)
    expected = hf_shape(kind, leaf.shape)
    if tuple(tensor.get_shape()) != expected:
      raise UnsupportedCheckpoint(
        f"tensor {hf!r} has shape {tuple(tensor.get_shape())}, the config implies {expected}"
      )

    def block(index: tuple[slice, ...] | None) -> np.ndarray:
      assert index is not None  # jax passes every shard's index (and asserts so itself)
      return np.asarray(read_block(tensor, kind, index, leaf.shape), leaf.dtype)

    return jax.make_array_from_callback(leaf.shape, leaf.sharding, block)

  try:
    return jax.tree_util.tree_map_with_path(load, abstract_params)
  finally:
    reader.close()


# ----------------------------------------------------------------------------------------------
# Writing.


def _host(x: jax.Array) -> np.ndarray:
  """The whole array on the host (gathered from every process)."""
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def hf_tensors(
  config: TransformerConfig, params: Any, family: str
) -> Iterator[tuple[str, np.ndarray]]:
  """Yields (HF name, float32 array) for every tensor of the exported model, one at a time."""
  names = param_map(config)
  flat = {path_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
  order = hf_channel_order(config)
  d = config.embed_dim

  def hf_array(name: str) -> np.ndarray:
    ours = _host(flat[name]).astype(np.float32)
    kind = names[name][1]
    if name.endswith(("q_proj", "k_proj")):
      ours = ours[:, :, order]
    if kind == "heads_out":
      return ours.reshape(d, -1).T
    if kind == "heads_in":
      return ours.reshape(-1, d).T
    return ours.T if kind == "transpose" else ours

  for name, (hf, _) in names.items():
    if family == "phi3" and ".attn." in name and not name.endswith("o_proj"):
      if name.endswith("q_proj"):
        stem = hf.rsplit(".", 2)[0]
        parts = [hf_array(name.replace("q_proj", p)) for p in ("q_proj", "k_proj", "v_proj")]
        yield stem + ".qkv_proj.weight", np.concatenate(parts)
      continue
    if family == "phi3" and name.endswith(("mlp.gate", "mlp.up")):
      if name.endswith("gate"):
        stem = hf.rsplit(".", 2)[0]
        yield (
          stem + ".gate_up_proj.weight",
          np.concatenate([hf_array(name), hf_array(name[: -len("gate")] + "up")]),
        )
      continue
    yield hf, hf_array(name)


def write_safetensors(
  directory: str,
  tensors: Iterator[tuple[str, np.ndarray]],
  *,
  max_shard_bytes: int = 2 << 30,
  write: Callable[..., None] = save_file,
) -> list[str]:
  """Writes tensors as model-0000k-of-0000n.safetensors shards plus the index (one file if it fits)."""
  shards: list[dict[str, np.ndarray]] = [{}]
  size = 0
  files: list[str] = []
  weight_map: dict[str, str] = {}
  tmp_names: list[str] = []

  def flush():
    name = f"shard-{len(tmp_names):05d}.tmp"
    write(shards[-1], os.path.join(directory, name), metadata={"format": "pt"})
    tmp_names.append(name)
    for key in shards[-1]:
      weight_map[key] = name
    shards[-1] = {}

  for name, array in tensors:
    if size and size + array.nbytes > max_shard_bytes:
      flush()
      size = 0
    shards[-1][name] = np.ascontiguousarray(array)
    size += array.nbytes
  flush()
  total = len(tmp_names)
  for i, tmp in enumerate(tmp_names):
    final = "model.safetensors" if total == 1 else f"model-{i + 1:05d}-of-{total:05d}.safetensors"
    os.replace(os.path.join(directory, tmp), os.path.join(directory, final))
    files.append(final)
    weight_map = {k: (final if v == tmp else v) for k, v in weight_map.items()}
  if total > 1:
    with open(os.path.join(directory, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
      json.dump({"metadata": {}, "weight_map": dict(sorted(weight_map.items()))}, f, indent=2)
  return files
