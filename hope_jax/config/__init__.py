"""The ml_collections configs every file in configs/ starts from, and presets."""
