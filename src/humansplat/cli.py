"""The `humansplat` command: one subcommand per stage, each registered by its own module.

Every command module exposes ``register(subparsers)``, which adds its parser and sets ``func``;
``func(args)`` returns the exit code. Errors a user can cause are raised as ``UserError`` and
printed as one line.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules (under humansplat.commands) that add subcommands, in the order `--help` lists them.
COMMANDS = [
    "reconstruct",
    "fit",
    "render",
    "data",
    "train",
    "eval",
    "animate",
    "export",
    "view",
    "app",
]


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    from humansplat import __version__

    parser = argparse.ArgumentParser(prog="humansplat", description="One photo of a person in, a 3D Gaussian-splat human out.")
    parser.add_argument("--version", action="version", version=f"humansplat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"humansplat.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"humansplat {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

