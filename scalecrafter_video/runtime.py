"""Where work runs: the one device resolver, dtype choice, process-group helper and version record.

Under ``torchrun`` every process has ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_distributed`
joins the group (gloo on CPU, nccl on CUDA) and :class:`Dist` wraps the few collectives the batch
runner and the FVD feature sharding need. Outside ``torchrun`` everything degrades to one process.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

from .errors import ScaleCrafterError

__all__ = ["Dist", "current_dist", "init_distributed", "is_out_of_memory", "resolve_device", "resolve_dtype", "versions"]


def resolve_device(name=None, *, local_rank: int | None = None):
    """``"auto"``/None: this process's CUDA device when CUDA is available (``cuda:LOCAL_RANK`` under a
    process group of several ranks), else the CPU; any other name is parsed and checked."""
    import torch

    if name is None or name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        if local_rank is None and current_dist().world > 1:
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        return torch.device("cuda", local_rank) if local_rank is not None else torch.device("cuda")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ScaleCrafterError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ScaleCrafterError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    return device


def resolve_dtype(name: str, device):
    """``"auto"``: float16 on CUDA, float32 elsewhere; else the named torch dtype."""
    import torch

    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in ("float32", "float16", "bfloat16"):
        raise ScaleCrafterError(f"unknown dtype {name!r}; use auto, float32, float16 or bfloat16")
    return getattr(torch, name)


@dataclass
class Dist:
    """This process's place in the group (``world == 1``, not ``initialised``: a single process)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised: bool = False
    owned: bool = False  # this process's call created the group: close() tears it down

    def barrier(self) -> None:
        if self.initialised:
            import torch.distributed as td

            td.barrier()

    def gather(self, obj) -> list:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.initialised:
            return [obj]
        import torch.distributed as td

        out = [None] * self.world
        td.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        """Leave the group if this handle created it (a group someone else set up stays)."""
        if self.initialised and self.owned:
            import torch.distributed as td

            td.destroy_process_group()
        self.initialised = self.owned = False


def current_dist() -> Dist:
    """The group this process already belongs to (someone else initialised it), else one process."""
    import torch.distributed as td

    if td.is_available() and td.is_initialized():
        return Dist(rank=td.get_rank(), world=td.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")), initialised=True)
    return Dist()


def init_distributed(device_name: str = "auto") -> Dist:
    """Join the group described by torchrun's environment; gloo on CPU, nccl on CUDA.

    When the group already exists (a caller up the stack joined it), the handle uses it and its
    ``close()`` leaves it alone.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as td

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and not str(device_name).startswith("cpu")
    if cuda:
        torch.cuda.set_device(local)
    owned = not td.is_initialized()
    if owned:
        td.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local, initialised=True, owned=owned)


def is_out_of_memory(exc: BaseException) -> bool:
    """Host or accelerator memory ran out (a condition the user can fix with smaller settings)."""
    import torch

    if isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def versions() -> dict:
    """Python and the package versions that decide the pixels (for sidecars and bug reports)."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("scalecrafter-video", "torch", "diffusers", "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out
