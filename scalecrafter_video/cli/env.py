"""``scalecrafter-video env``: versions for bug reports."""

from __future__ import annotations

import argparse
import platform


def register(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("env", help="print versions for bug reports")
    e.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..runtime import versions

    print(f"python        {platform.python_version()} ({platform.machine()})")
    for pkg, version in versions().items():
        if pkg != "python":
            print(f"{pkg:<18} {version or '(not installed)'}")
    print(f"cuda          {torch.cuda.is_available()} ({torch.cuda.device_count()} device(s))")
    return 0
