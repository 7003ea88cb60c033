"""Slash commands, one module per feature. Import `from commands import imagine`, never `import commands`."""
