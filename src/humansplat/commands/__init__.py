"""Subcommands of the `humansplat` CLI; each module has ``register(subparsers)``."""
