"""The denoising loop, as a small plain function (k-diffusion style).

Classifier-free guidance runs as ONE batched model call on ``[uncond, cond]`` over duplicated
latents, the layout ScaleCrafter's noise-damped CFG recognises.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from tqdm.auto import tqdm

__all__ = ["cfg_denoise", "sample_loop"]


def cfg_denoise(
    model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    guidance_scale: float,
) -> torch.Tensor:
    """``eps_u + w (eps_c - eps_u)`` from one call on ``cat([uncond, cond])``; plain eps when w <= 1."""
    if uncond is None or guidance_scale <= 1.0:
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
    for i, t in enumerate(tqdm(timesteps, desc="denoising", disable=not progress, leave=False)):
        x_in = scheduler.scale_model_input(x, t)
        eps = cfg_denoise(model, x_in, t, cond, uncond, guidance_scale)
        x = scheduler.step(eps, t, x, **step_kwargs).prev_sample
        if callback is not None:
            callback(start_step + i, t, x)
    return x
