"""Easel's image engine: parameters, models, diffusers pipelines and the GPU executor. Knows nothing of Discord."""
