"""The denoising loop, as a small plain function (k-diffusion style).

Classifier-free guidance runs as ONE batched model call on ``[uncond, cond]`` over duplicated
latents. Every model call is announced with :func:`~scalecrafter_video.trajectory.denoising_step`
(its step index in the full trajectory, and whether it is a CFG batch), so the engine never has
to infer either.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from ..errors import NonFiniteError
from ..trajectory import denoising_step

__all__ = ["cfg_denoise", "sample_loop", "uses_cfg"]


def uses_cfg(uncond: torch.Tensor | None, guidance_scale: float) -> bool:
    """CFG runs when there is an unconditional input and the scale is above 1."""
    return uncond is not None and guidance_scale > 1.0


def cfg_denoise(
    model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    guidance_scale: float,
) -> torch.Tensor:
    """``eps_u + w (eps_c - eps_u)`` from one call on ``cat([uncond, cond])``; plain eps without CFG."""
    if not uses_cfg(uncond, guidance_scale):
        return model(x, t, cond)
    eps = model(torch.cat([x, x]), t, torch.cat([uncond, cond]))
    eps_uncond, eps_cond = eps.chunk(2)
    return eps_uncond + guidance_scale * (eps_cond - eps_uncond)


def sample_loop(
    model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    scheduler,
    x: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    *,
    guidance_scale: float,
    eta: float = 0.0,
    start_step: int = 0,
    generator: torch.Generator | None = None,
    progress: bool = True,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Run ``scheduler`` (timesteps already set) from step index ``start_step`` on latents ``x``.

    ``model(x, t, context) -> eps`` with ``x`` of shape ``(b, c, f, h, w)`` or ``(b, c, h, w)``.
    ``eta`` is passed to schedulers that take it (DDIM); ``callback(i, t, x)`` runs after each step.
    """
    timesteps = scheduler.timesteps[start_step:]
    step_kwargs = {}
    if "eta" in scheduler.step.__code__.co_varnames:
        step_kwargs["eta"] = eta
    if "generator" in scheduler.step.__code__.co_varnames:
        step_kwargs["generator"] = generator
    num_steps = len(scheduler.timesteps)
    for i, t in enumerate(tqdm(timesteps, desc="denoising", disable=not progress, leave=False)):
        x_in = scheduler.scale_model_input(x, t)
        with denoising_step(start_step + i, num_steps, cfg=uses_cfg(uncond, guidance_scale)):
            eps = cfg_denoise(model, x_in, t, cond, uncond, guidance_scale)
        x = scheduler.step(eps, t, x, **step_kwargs).prev_sample
        if not torch.isfinite(x).all():  # stop at the first bad step: nothing past it is worth computing
            raise NonFiniteError(
                f"non-finite latents (NaN/inf) at step {start_step + i} of {num_steps}: the guidance scale "
                f"({guidance_scale}) or eta ({eta}) is too large, or float16 overflowed (try --dtype float32)")
        if callback is not None:
            callback(start_step + i, t, x)
    return x

