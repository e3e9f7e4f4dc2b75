"""Core subcommands: ``generate`` and ``env``."""

from __future__ import annotations

import argparse
import platform


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("env", help="print versions for bug reports")
    p.set_defaults(func=run_env)


def run_env(args: argparse.Namespace) -> int:
    import importlib.metadata as md

    import torch

    print(f"python        {platform.python_version()} ({platform.machine()})")
    for pkg in ("scalecrafter-video", "torch", "diffusers", "transformers", "einops", "av", "omegaconf"):
        try:
            print(f"{pkg:<13} {md.version(pkg)}")
        except md.PackageNotFoundError:
            print(f"{pkg:<13} (not installed)")
    print(f"cuda          {torch.cuda.is_available()} ({torch.cuda.device_count()} device(s))")
    return 0
