"""Hugging Face checkpoints in and out: convert a Llama-family directory into a run, export a run."""

from hope_jax.interop.convert import convert_hf, init_from_run, load_run_config
from hope_jax.interop.export import export_run, write_hf_directory
from hope_jax.interop.hf_config import UnsupportedCheckpoint
from hope_jax.interop.released import load_params, release_run, run_from_release, save_params
