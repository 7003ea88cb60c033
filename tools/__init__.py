"""Developer tools that are not part of the running bot (e.g. training the built-in shapes model)."""
