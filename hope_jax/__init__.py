"""HoPE and rotary-family positional encoders for JAX/Flax."""

__version__ = "0.1.0"
