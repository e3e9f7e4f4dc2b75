"""``torch.compile`` for a ScaleCrafter UNet: one graph per phase, no recompilation per step.

The engine keeps every per-call decision outside Dynamo (:mod:`.install`): the compiled graphs
only read ``state.actions``, a ``{layer: (factor, dispersed)}`` dict that is the same for all the
calls of one *phase*. A trajectory therefore compiles one graph per distinct phase (plain;
dilated, once per progressive factor; the damped unconditional pass, which also has half the
batch) and reuses them at every later step and in every later trajectory of the same size.
``torch.compile(unet)`` (the returned wrapper, before or after :func:`apply_scalecrafter`) works
the same way; :func:`compile_unet` is the library entry point the command line uses.
"""

from __future__ import annotations

import torch

from .install import find_unet

__all__ = ["MIN_RECOMPILE_LIMIT", "compile_unet"]

# Graphs Dynamo may keep per code object before it falls back to eager; its default (8) can be
# below the number of phases of a progressive schedule with noise-damped CFG.
MIN_RECOMPILE_LIMIT = 64


def _raise_recompile_limit(limit: int) -> None:
    config = torch._dynamo.config
    name = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"
    if getattr(config, name) < limit:
        setattr(config, name, limit)


def compile_unet(target, **compile_kwargs):
    """Compile the UNet of ``target`` (a pipeline with ``.unet``, or the UNet module) in place.

    Uses ``nn.Module.compile``: the module object, its ``state_dict`` keys and ``.unet`` stay the
    same, so :func:`apply_scalecrafter` / :func:`remove_scalecrafter` work before or after, and
    the damped pass's nested UNet call runs compiled too. ``compile_kwargs`` go to
    ``torch.compile`` (``backend``, ``mode``, ``fullgraph``, ``dynamic``, ...). Raises Dynamo's
    global recompile limit to at least :data:`MIN_RECOMPILE_LIMIT` (one graph per phase).

    Returns ``target``. The first call of each phase pays the compilation; on a GPU expect a
    speed-up only when a run has many more steps than phases.
    """
    unet, _ = find_unet(target)
    _raise_recompile_limit(MIN_RECOMPILE_LIMIT)
    unet.compile(**compile_kwargs)
    return target
