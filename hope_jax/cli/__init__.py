"""The command line: ``python -m hope_jax {train,evaluate,table,demo}``."""
