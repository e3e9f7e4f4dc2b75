"""The one record written next to every output (``<out>.json``, batch sidecars, the demo's).

Every record carries the same core fields, so a file written by ``generate``, ``render`` or ``demo``
reads the same way: what was asked (prompt, seed, size, frames, steps, guidance, eta), with what
(model, family, resolved schedule, dtype, device, package versions) and how long it took. Callers add
their own fields (``compare``, ``config_hash``, ``metrics``, ...) as keyword arguments.
"""

from __future__ import annotations

from ..runtime import versions

__all__ = ["SCHEMA", "run_record", "weights_placement"]

SCHEMA = "scalecrafter-video/run/v1"


def weights_placement(pipe) -> dict:
    """``{"device", "dtype"}`` of the UNet's weights, as strings (``"unknown"`` without parameters)."""
    param = next(iter(pipe.unet.parameters()), None) if getattr(pipe, "unet", None) is not None else None
    return {"device": str(param.device) if param is not None else "unknown",
            "dtype": str(param.dtype) if param is not None else "unknown"}


def run_record(*, prompt: str, seed: int, model, height: int, width: int, frames: int, fps: float, steps, guidance,
               eta, config: dict, dtype, device, seconds: float, negative_prompt: str | None = None,
               family: str | None = None, **extra) -> dict:
    """A JSON-ready record of one run; ``config`` is the resolved schedule (``ScaleCrafterConfig.to_dict()``)."""
    record = {
        "schema": SCHEMA, "prompt": prompt, "negative_prompt": negative_prompt, "seed": seed,
        "model": str(model), "family": family, "height": int(height), "width": int(width), "frames": int(frames),
        "fps": fps, "steps": steps, "guidance": guidance, "eta": eta, "dtype": str(dtype), "device": str(device),
        "config": config, "seconds": seconds,
    }
    clash = sorted(set(extra) & set(record))
    if clash:
        raise ValueError(f"run_record: {clash} are core fields, pass them as such")
    record.update(extra)
    record["versions"] = versions()
    return record
