"""The one interface every pipeline of the toolkit offers (ours and the wrapped diffusers ones).

Recipes (generate one video, batch rendering, LR guidance) use only this; they never inspect a
pipeline's class or signature. Capabilities a pipeline may lack are declared, and a pipeline
refuses a request it cannot honour with a clear error instead of ignoring it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["VideoPipeline", "resolve_call"]


@runtime_checkable
class VideoPipeline(Protocol):
    """``pipe(prompt, ...) -> uint8 (b, f, h, w, 3)``.

    Attributes:
        unet, scheduler: what ScaleCrafter is applied to (the scheduler tells the step).
        train_size: native ``(H, W)`` pixels; ``vae_scale_factor``: pixels per latent.
        defaults: ``num_frames``, ``fps``, ``guidance_scale``, ``num_inference_steps``, ``eta``.
        needs_image: image-to-video (``image=`` required); optional, ``False`` when absent.
        supports_lr_guidance: ``__call__`` takes ``latents=`` and ``start_step=`` and
            ``output_type="latent"``, and ``decode(latents, chunk_size, tile_size)`` exists;
            optional, ``False`` when absent.

    ``__call__(prompt, negative_prompt=None, height=None, width=None, num_frames=None,
    num_inference_steps=None, guidance_scale=None, eta=None, generator=None, progress=True,
    chunk_size=None, tile_size=None, ...)``: ``None`` means the model's default; ``chunk_size``
    (frames per VAE call) and ``tile_size`` (latent tile of the synced tiled decode) are honoured
    or refused with :class:`~scalecrafter_video.errors.ScaleCrafterError`; non-finite results raise
    :class:`~scalecrafter_video.errors.NonFiniteError`.
    """

    train_size: tuple[int, int]
    vae_scale_factor: int
    defaults: dict

    def check_size(self, height: int, width: int) -> None: ...

    def __call__(self, prompt, *args, **kwargs) -> np.ndarray: ...


def resolve_call(pipe, height, width, num_frames, num_inference_steps, guidance_scale=None):
    """``None`` -> the model's default; anything else must be valid (0 never means "default").

    Returns ``(height, width, num_frames, steps, guidance)``.
    """
    import math

    from ..errors import ScaleCrafterError

    d = pipe.defaults
    height = pipe.train_size[0] if height is None else height
    width = pipe.train_size[1] if width is None else width
    num_frames = d.get("num_frames", 1) if num_frames is None else num_frames
    steps = d["num_inference_steps"] if num_inference_steps is None else num_inference_steps
    guidance = d["guidance_scale"] if guidance_scale is None else guidance_scale
    for name, value in (("num_frames", num_frames), ("num_inference_steps", steps)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ScaleCrafterError(f"{name} must be a positive integer, got {value!r}")
    if not math.isfinite(guidance) or guidance < 0:
        raise ScaleCrafterError(f"guidance_scale must be a finite number >= 0, got {guidance}")
    pipe.check_size(height, width)
    return height, width, num_frames, steps, guidance
