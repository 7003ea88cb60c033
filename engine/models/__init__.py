"""Model registry, built-in models, single-file loading and hashing."""
