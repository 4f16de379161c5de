"""Hugging Face checkpoints in and out: convert a Llama-family directory into a run, export a run."""
