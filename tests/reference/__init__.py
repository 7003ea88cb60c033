"""Reference implementations the engine's ports are checked against; test-only, never imported by the product."""
