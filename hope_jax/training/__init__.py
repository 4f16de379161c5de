"""Training: sharded state, the jitted step, the loop, orbax checkpoints and metrics."""
