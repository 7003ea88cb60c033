"""Configuration: Settings from EASEL_* environment variables or a .env file, and logging setup."""
