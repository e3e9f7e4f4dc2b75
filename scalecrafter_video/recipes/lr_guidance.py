"""Low-resolution guidance (the paper's "Ours + LR" row) and the "native + bicubic" baseline.

LR guidance: sample at the model's native size, upsample the result to the target size, re-noise it
to an intermediate step of the same DDIM schedule and finish the denoising at the target size with
ScaleCrafter switched on. The low-resolution sample fixes the global layout (one object, where it
is and how big), the high-resolution pass only has to add detail.

``step_fraction`` is the re-noising strength: the fraction of the ``num_inference_steps`` schedule
that is run again at the target size (``1.0`` = from pure noise, i.e. no guidance; ``0.4`` = the
last 40 % of the steps). The re-noised start is ``add_noise(upsampled, noise, timesteps[start])``
with ``start = steps - round(step_fraction * steps)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from ..errors import ScaleCrafterError
from ..engine import apply_scalecrafter, remove_scalecrafter, unet_levels
from ..ops.pixels import float255_to_uint8

__all__ = ["generate_native_upscaled", "generate_with_lr_guidance", "native_size", "upsample_video"]


def native_size(train_size, target_size, multiple: int = 1) -> tuple[int, int]:
    """The size to sample at natively for ``target_size``: the target's aspect ratio at about the
    training pixel count, sides rounded to ``multiple`` and never above the target."""
    th, tw = train_size
    gh, gw = target_size
    if gh * gw <= th * tw:
        h, w = gh, gw
    else:
        k = math.sqrt(th * tw / (gh * gw))
        h, w = gh * k, gw * k
    h = max(multiple, min(gh, int(round(h / multiple)) * multiple))
    w = max(multiple, min(gw, int(round(w / multiple)) * multiple))
    return h, w


def upsample_video(x: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Spatially resize ``(b, c, f, h, w)`` frame by frame (``align_corners=False``)."""
    b, c, f = x.shape[:3]
    flat = rearrange(x, "b c f h w -> (b f) c h w")
    kwargs = {} if mode in ("nearest", "area") else {"align_corners": False}
    flat = F.interpolate(flat.float(), size=tuple(size), mode=mode, **kwargs)
    return rearrange(flat, "(b f) c h w -> b c f h w", f=f).to(x.dtype)


def _size_multiple(pipe) -> int:
    return 2 ** (unet_levels(pipe.unet) - 1)


def _native_latents(pipe, prompt, height, width, call, generator, progress):
    size = native_size(pipe.train_size, (height, width), _size_multiple(pipe) * pipe.vae_scale_factor)
    remove_scalecrafter(pipe)  # the native pass runs the unmodified model
    lat = pipe(prompt, height=size[0], width=size[1], generator=generator, progress=progress,
               output_type="latent", **call)
    return lat, size


def generate_with_lr_guidance(
    pipe,
    prompt,
    height: int,
    width: int,
    config,
    step_fraction: float,
    *,
    negative_prompt=None,
    num_frames=None,
    num_inference_steps=None,
    guidance_scale=None,
    eta=None,
    generator: torch.Generator | None = None,
    progress: bool = True,
    upsample_mode: str = "bicubic",
    output_type: str = "np",
):
    """Native sample -> upsample -> re-noise to ``step_fraction`` -> finish at ``height x width``
    with ``config`` applied (and removed again afterwards).

    Returns what ``pipe(...)`` returns: uint8 ``(b, f, height, width, 3)``, or the final latents
    with ``output_type="latent"``.
    """
    try:
        step_fraction = float(step_fraction)
    except (TypeError, ValueError):
        raise ScaleCrafterError(f"--lr-guidance must be a number in (0, 1], got {step_fraction!r}") from None
    if not 0.0 < step_fraction <= 1.0:
        raise ScaleCrafterError(
            f"--lr-guidance must be in (0, 1] (fraction of the steps re-run at the target size), got {step_fraction}"
        )
    pipe.check_size(height, width)
    steps = num_inference_steps or pipe.defaults["num_inference_steps"]
    call = dict(negative_prompt=negative_prompt, num_frames=num_frames, num_inference_steps=steps,
                guidance_scale=guidance_scale, eta=eta)
    low, _ = _native_latents(pipe, prompt, height, width, call, generator, progress)

    f = pipe.vae_scale_factor
    up = upsample_video(low, (height // f, width // f), upsample_mode)
    if pipe.vae is None:  # pixel space: keep the upsampled frames in the model's range
        up = up.clamp(-1, 1)
    start = steps - int(round(step_fraction * steps))
    start = min(max(start, 0), steps - 1)
    pipe.scheduler.set_timesteps(steps, device=pipe.device)
    t = pipe.scheduler.timesteps[start]
    noise = torch.randn(up.shape, generator=generator, dtype=torch.float32).to(up.device, up.dtype)
    noisy = pipe.scheduler.add_noise(up, noise, t.reshape(1))

    apply_scalecrafter(pipe, config)
    try:
        return pipe(prompt, height=height, width=width, generator=generator, progress=progress,
                    latents=noisy, start_step=start, output_type=output_type, **call)
    finally:
        remove_scalecrafter(pipe)


def generate_native_upscaled(pipe, prompt, height: int, width: int, *, mode: str = "bicubic",
                             generator: torch.Generator | None = None, progress: bool = True, **call) -> np.ndarray:
    """The plain baseline: sample at the native size, then resize the frames to ``height x width``
    (bicubic on the decoded frames). uint8 ``(b, f, height, width, 3)``."""
    lat, _ = _native_latents(pipe, prompt, height, width, call, generator, progress)
    frames = pipe.decode(lat)  # uint8 (b, f, h, w, 3)
    x = torch.from_numpy(frames).float().permute(0, 4, 1, 2, 3)  # (b, 3, f, h, w)
    x = upsample_video(x, (height, width), mode)
    return float255_to_uint8(rearrange(x, "b c f h w -> b f h w c"))
