"""``python -m hope_jax``: the command line (see :mod:`hope_jax.cli.main`)."""

from hope_jax.cli.main import main

if __name__ == "__main__":
  main()
