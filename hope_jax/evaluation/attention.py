"""Attention analysis: attention versus relative distance and per-band q·k contributions.

For a few validation windows (the XLA reference attention path: memory quadratic in length) it
measures, per layer, averaged over heads, queries and windows:

* the mean attention probability at each relative distance d = n - m (query n, key m), reported
  in log-spaced distance buckets (distance 0 alone, then edges ``geomspace(1, T)``; a bucket's
  value is the mean over all its (query, key) pairs) — local decay and the long-range U-shape;
* each frequency band's contribution to the attention logits before scaling: with pre-rotation
  q, k paired into complex numbers q⁽ⁱ⁾ = q_a + i·q_b by the encoding's layout, band i adds
  Re[q⁽ⁱ⁾(n) · conj(k⁽ⁱ⁾(m)) · e^{i(n−m)θ_i}] (θ_i = 0: plain q_i·k_i), and the bands sum to
  q_rot·k_rot, the logit before × logit_scale/√head_dim (and before the per-query factor of
  ``logn_scaling``, 1 within L) — its signed and absolute mean per distance bucket, and the RMS
  norm of each band of q and k.  Bands are classed ``high``
  (≥ 1 full period within L: what HoPE keeps), ``low`` (rotating, < 1 period: what HoPE removes)
  and ``unrotated``; ``class_share`` is each class's share of the mean absolute contribution.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from hope_jax import model
from hope_jax.data import batches
from hope_jax.evaluation import context as evaluate
from hope_jax.evaluation import forward as eval_forward
from hope_jax.evaluation import plots
from hope_jax.positional import encoders

# Layout -> the two members (a, b) of every rotation pair, each [..., head_dim // 2].
PAIRINGS: dict[str, Callable[[jax.Array], tuple[jax.Array, jax.Array]]] = {
  "split_half": lambda x: (x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]),
  "interleaved": lambda x: (x[..., 0::2], x[..., 1::2]),
}
BAND_CLASSES = ("high", "low", "unrotated")


def _pairs(x: jax.Array, layout: str) -> tuple[jax.Array, jax.Array]:
  if layout not in PAIRINGS:
    raise ValueError(f"layout must be one of {sorted(PAIRINGS)}, got layout={layout!r}")
  return PAIRINGS[layout](x)


def _real_imag(qa, qb, ka, kb, spec: str) -> tuple[jax.Array, jax.Array]:
  """Real and imaginary parts of q⁽ⁱ⁾·conj(k⁽ⁱ⁾) for every (query, key) pair, by einsum spec."""
  mul = lambda x, y: jnp.einsum(spec, x, y, precision="highest")  # noqa: E731
  return mul(qa, ka) + mul(qb, kb), mul(qb, ka) - mul(qa, kb)


def band_contributions(
  q: jax.Array, k: jax.Array, positions: jax.Array, frequencies: Any, *, layout: str = "split_half"
) -> jax.Array:
  """Per-band logit contributions [B, heads, bands, T, S] of pre-rotation q [B,T,H,D], k [B,S,H,D].

  Summed over bands this is the rotated q·k (the attention logit before scaling); positions [B, T]
  serve queries and keys alike.
  """
  real, imag = _real_imag(*_pairs(q, layout), *_pairs(k, layout), "bthi,bshi->bhits")
  relative = positions[:, :, None] - positions[:, None, :]
  angles = jnp.moveaxis(encoders.rotation_angles(relative, frequencies), -1, 1)[:, None]
  return real * jnp.cos(angles) - imag * jnp.sin(angles)


def shear(matrix: jax.Array) -> jax.Array:
  """Maps [..., T, T] (query n, key m) to (query n, distance d) = entry (n, n - d), 0 if d > n."""
  length = matrix.shape[-1]
  n, d = jnp.arange(length)[:, None], jnp.arange(length)[None, :]
  return jnp.where(d <= n, matrix[..., n, jnp.maximum(n - d, 0)], 0)


def _layer_statistics(
  extras: dict[str, jax.Array], *, layout: str, cos: jax.Array, sin: jax.Array
) -> dict[str, jax.Array]:
  """One layer's sums by distance and band energies from its probabilities and q, k (see below)."""

  def one_band(args):
    qa, qb, ka, kb, c, s = args  # [B, T, H] each; c, s [T]
    real, imag = _real_imag(qa, qb, ka, kb, "bnh,bmh->bhnm")
    contribution = shear(real) * c - shear(imag) * s  # [B, H, T(query), T(distance)]
    return contribution.sum(axis=(1, 2)), jnp.abs(contribution).sum(axis=(1, 2))

  (qa, qb), (ka, kb) = _pairs(extras["q"], layout), _pairs(extras["k"], layout)
  by_band = [jnp.moveaxis(x, -1, 0) for x in (qa, qb, ka, kb)]  # [bands, B, T, H]
  signed, absolute = jax.lax.map(one_band, (*by_band, cos, sin))  # [bands, B, T]
  return {
    "attention": shear(extras["attention"]).sum(axis=(1, 2)),  # [B, T]
    "band": signed.swapaxes(0, 1),
    "band_abs": absolute.swapaxes(0, 1),
    "q_energy": (qa**2 + qb**2).mean(axis=(1, 2)),
    "k_energy": (ka**2 + kb**2).mean(axis=(1, 2)),
  }


def attention_statistics(
  net: model.Transformer, tokens: jax.Array, positions: jax.Array | None = None
) -> dict[str, jax.Array]:
  """Per-window sums over heads and queries by relative distance, and per-band q/k energies.

  Returns ``attention`` [B, layers, T] (attention probability summed at each distance),
  ``band`` and ``band_abs`` [B, layers, bands, T] (signed and absolute band contributions summed
  at each distance), ``q_energy`` and ``k_energy`` [B, layers, bands] (mean |q⁽ⁱ⁾|², |k⁽ⁱ⁾|² over
  positions and heads).  Positions must be contiguous in every row (distance = index difference).
  Each layer is reduced as it is computed, so memory holds one layer's [B, heads, T, T] at a time.
  """
  encoding = net.config.encoding
  angles = encoders.rotation_angles(jnp.arange(tokens.shape[1]), encoding.frequencies).T
  reduce = functools.partial(
    _layer_statistics, layout=encoding.layout, cos=jnp.cos(angles), sin=jnp.sin(angles)
  )
  _, per_layer = model.analysis_forward(net, tokens, positions, reduce_layer=reduce)
  return {name: value.swapaxes(0, 1) for name, value in per_layer.items()}  # [B, layers, ...]


def distance_buckets(length: int, num_buckets: int) -> np.ndarray:
  """Bucket edges over distances 0..length-1: [0, 1, then log-spaced up to length]."""
  if num_buckets < 2 or length < 2:
    raise ValueError(
      f"need num_buckets >= 2 and length >= 2, got num_buckets={num_buckets}, length={length}"
    )
  edges = np.unique(np.round(np.geomspace(1, length, num_buckets - 1)).astype(np.int64))
  return np.concatenate([[0], edges])


def bucket_average(sums: np.ndarray, counts: np.ndarray, edges: np.ndarray) -> np.ndarray:
  """Pools per-distance sums [..., T] and pair counts [T] into bucket means [..., buckets]."""
  total = np.add.reduceat(sums, edges[:-1], axis=-1)
  return total / np.add.reduceat(counts, edges[:-1])


def band_classes(frequencies: np.ndarray, train_length: int) -> list[str]:
  """Classes each band: "high" (≥ 1 period within L), "low" (rotating, < 1) or "unrotated"."""
  return [
    "unrotated" if f == 0 else "high" if 2 * math.pi / f <= train_length else "low"
    for f in np.asarray(frequencies, np.float64)
  ]


def summarize(
  stats: dict[str, np.ndarray],
  *,
  num_heads: int,
  frequencies: np.ndarray,
  train_length: int,
  num_buckets: int,
) -> dict[str, Any]:
  """Turns summed statistics of N windows into per-layer bucket means and band summaries."""
  rows, num_layers, length = stats["attention"].shape
  edges = distance_buckets(length, num_buckets)
  counts = rows * num_heads * (length - np.arange(length, dtype=np.float64))  # pairs at d
  attention = bucket_average(stats["attention"].sum(0), counts, edges)
  band = bucket_average(stats["band"].sum(0), counts, edges)
  band_abs = bucket_average(stats["band_abs"].sum(0), counts, edges)
  pairs = counts.sum()
  mean = stats["band"].sum((0, -1)) / pairs  # [layers, bands] over all causal pairs
  mean_abs = stats["band_abs"].sum((0, -1)) / pairs
  classes = band_classes(frequencies, train_length)
  layers = []
  for layer in range(num_layers):
    total = mean_abs[layer].sum()
    share = {
      c: float(sum(a for a, k in zip(mean_abs[layer], classes) if k == c) / total)
      if total > 0
      else float("nan")
      for c in BAND_CLASSES
    }
    layers.append(
      {
        "layer": layer,
        "attention": attention[layer].tolist(),
        "band_contribution": band[layer].tolist(),
        "band_abs_contribution": band_abs[layer].tolist(),
        "band_mean": mean[layer].tolist(),
        "band_mean_abs": mean_abs[layer].tolist(),
        "q_norm": np.sqrt(stats["q_energy"][:, layer].mean(0)).tolist(),
        "k_norm": np.sqrt(stats["k_energy"][:, layer].mean(0)).tolist(),
        "class_share": share,
        "top_bands": np.argsort(-mean_abs[layer])[:4].tolist(),
      }
    )
  return {
    "length": length,
    "windows": rows,
    "buckets": [{"start": int(a), "end": int(b)} for a, b in zip(edges[:-1], edges[1:])],
    "frequencies": np.asarray(frequencies, np.float64).tolist(),
    "band_classes": classes,
    "layers": layers,
  }


def analyze(
  net: model.Transformer, tokens: np.ndarray, *, position_offset: int = 0, num_buckets: int = 16
) -> dict[str, Any]:
  """Runs the analysis on a model directly (no sharding): tokens [N, T] in one batch."""
  graphdef, state = nnx.split(net)
  positions = position_offset + np.broadcast_to(np.arange(tokens.shape[1]), tokens.shape)
  stats = jax.jit(lambda s, t, p: attention_statistics(nnx.merge(graphdef, s), t, p))(
    state, jnp.asarray(tokens, jnp.int32), jnp.asarray(positions, jnp.int32)
  )
  cfg = net.config
  return summarize(
    jax.device_get(stats),
    num_heads=cfg.num_heads,
    frequencies=cfg.encoding.frequencies,
    train_length=cfg.train_length,
    num_buckets=num_buckets,
  )


def bucket_centers(buckets: list[dict[str, int]]) -> list[float]:
  """A representative distance per bucket: 0, or the geometric mean of its first and last."""
  return [0.0 if b["start"] == 0 else math.sqrt(b["start"] * (b["end"] - 1)) for b in buckets]


def eval_attention(ctx: evaluate.EvalContext) -> dict[str, Any]:
  """Attention and band contributions versus distance, with their two PNG figures."""
  e = ctx.config.attention
  length = int(round(e.length * ctx.train_length))
  if length < 2:
    raise ValueError(
      f"config.eval.attention.length={e.length!r} × L = {length} tokens; it must give at least 2"
    )
  windows = batches.eval_windows(ctx.split, length=length)
  if windows.num_windows == 0:
    ctx.log(f"attention: no validation document has {length} tokens; skipped")
    return {"skipped": f"no validation document has {length} tokens"}
  chosen = evaluate.select_windows(windows, e.windows)
  tokens = windows.tokens[chosen]
  positions = e.position_offset + np.broadcast_to(np.arange(length), tokens.shape)
  fn = ctx.model_fn(length, attention_statistics, key="attention")
  stats = eval_forward.batched_call(
    fn, tokens, positions=positions, batch_size=ctx.batch_divisor, batch_divisor=ctx.batch_divisor
  )
  cfg = ctx.model_config(length)
  result = summarize(
    stats,
    num_heads=cfg.num_heads,
    frequencies=cfg.encoding.frequencies,
    train_length=cfg.train_length,
    num_buckets=e.buckets,
  )
  result.update(
    position_offset=int(e.position_offset),
    tokens=int(tokens.size),
    documents=int(np.unique(windows.document_index[chosen]).size),
    bias=cfg.encoding.bias,
    logit_scale=cfg.encoding.logit_scale / math.sqrt(cfg.head_dim),
  )
  label = f"{ctx.run_metadata()['label']}, L = {ctx.train_length:,}, T = {length:,}"
  centers = bucket_centers(result["buckets"])
  if ctx.writes_files:
    plots.distance_curves(
      f"{ctx.eval_dir}/attention_distance.png",
      centers,
      {f"layer {r['layer']}": r["attention"] for r in result["layers"]},
      marker=ctx.train_length,
      y_label="mean attention probability",
      title=f"Attention versus relative distance ({label})",
    )
    plots.band_panels(
      f"{ctx.eval_dir}/band_contributions.png",
      result,
      centers=centers,
      title=f"Per-band q·k contributions ({label})",
    )
  for r in result["layers"]:
    share = ", ".join(f"{c} {v:.2f}" for c, v in r["class_share"].items())
    ctx.log(f"attention layer {r['layer']}: |contribution| share {share}")
  return result
