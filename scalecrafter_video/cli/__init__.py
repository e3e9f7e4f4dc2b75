"""The ``scalecrafter-video`` command: argparse only, one module per subcommand.

Each module here exposes ``register(subparsers)``, which adds its parser and sets ``func`` to a
function that turns the parsed arguments into plain values, calls the library (``recipes``,
``batch``, ``metrics``, ``demo``) and returns an exit code. Nothing below this package imports it.
Problems a user can fix raise :class:`~scalecrafter_video.errors.ScaleCrafterError`
and are printed as a single ``error:`` line (exit status 2), never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import traceback

from ..errors import ScaleCrafterError

# Modules that contribute subcommands, in the order they appear in --help.
COMMAND_MODULES = [
    "scalecrafter_video.cli.generate",
    "scalecrafter_video.cli.env",
    "scalecrafter_video.cli.fvd",
    "scalecrafter_video.cli.demo",
    "scalecrafter_video.cli.render",
    "scalecrafter_video.cli.tune",
    "scalecrafter_video.cli.ui",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scalecrafter-video",
        description="Training-free higher-resolution video/image generation with ScaleCrafter.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


class Terminated(BaseException):
    """SIGTERM, handled like Ctrl-C: temporaries are removed by the ``finally`` blocks on the way out."""


def _on_sigterm(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    parser = build_parser()
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _in_main_thread() else None
    try:
        return int(args.func(args) or 0)
    except ScaleCrafterError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("terminated (SIGTERM): stopped, no partial output kept", file=sys.stderr)
        return 143
    except Exception as exc:  # noqa: BLE001 - out of memory is a user-fixable condition too
        from ..runtime import is_out_of_memory

        if not is_out_of_memory(exc):
            raise
        if args.debug:
            traceback.print_exc()
        print("error: out of memory at this size; try a smaller --height/--width or --frames, --tile-size and "
              "--chunk-size for decoding, or --dtype float16/bfloat16 on a GPU", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
