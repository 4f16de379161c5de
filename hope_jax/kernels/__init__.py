"""Pallas (Triton) and Mosaic GPU kernels with their XLA fallbacks, one entry point per operation."""
