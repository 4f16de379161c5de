"""Pallas (Triton) and Mosaic GPU kernels with their XLA fallbacks, one entry point per operation.

Each entry point takes an ``implementation`` (its ``TransformerConfig`` field's value) and
resolves ``"auto"`` through :func:`select`, the one choice of kernel:

* :func:`dot_product_attention` (``attention_impl``): cuDNN, XLA or splash attention;
* :func:`add_rms_norm` (``norm_impl``): the residual add fused with RMSNorm;
* :func:`rotary_projection` (``projection_impl``): the q, k, v projections with the rotation;
* :func:`token_nll` (``loss_impl``): per-token negative log-likelihood.
"""

from hope_jax.kernels.attention import dot_product_attention
from hope_jax.kernels.loss import token_nll
from hope_jax.kernels.norm import add_rms_norm
from hope_jax.kernels.projection import rotary_projection
from hope_jax.kernels.selector import IMPLEMENTATIONS, select

__all__ = [
  "IMPLEMENTATIONS",
  "add_rms_norm",
  "dot_product_attention",
  "rotary_projection",
  "select",
  "token_nll",
]
