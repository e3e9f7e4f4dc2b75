"""The ``scalecrafter-video`` command: one entry point, one subcommand per job.

Each feature module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a function taking the parsed arguments and returning an exit code.
Problems a user can fix raise :class:`~scalecrafter_video.errors.ScaleCrafterError`
and are printed as a single ``error:`` line (exit status 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import ScaleCrafterError

# Modules that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES = [
    "scalecrafter_video.commands",
    "scalecrafter_video.metrics.cli",
    "scalecrafter_video.demo",
    "scalecrafter_video.render",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scalecrafter-video",
        description="Training-free higher-resolution video/image generation with ScaleCrafter.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ScaleCrafterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
