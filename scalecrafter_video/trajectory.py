"""Where a sampler is on its trajectory: the step a UNet call belongs to, and its CFG layout.

ScaleCrafter's settings are per step (``dilate_tau = 0.7``: the first 70% of the denoising steps,
counted from the noisiest). The engine never infers the step from timestep magnitudes, which
mean different things on DDIM (0..999), EDM (c_noise, about -1.6..1.6) or LCM schedules. It is
told, in this order of precedence:

1. **Explicitly**, by the loop that calls the UNet, through :func:`denoising_step`. Our own
   sampling loop does this; so can a user's loop around a bare UNet::

       from scalecrafter_video import denoising_step

       for i, t in enumerate(scheduler.timesteps):
           with denoising_step(i, len(scheduler.timesteps), cfg=True):
               eps = unet(torch.cat([x, x]), t, encoder_hidden_states=ctx).sample

2. **By the pipeline's scheduler**, for unmodified diffusers pipelines (see
   :func:`scalecrafter_video.engine.position.scheduler_position`).

The module holds only a context variable, so samplers can announce steps without importing the
engine (data flows one way: sampler -> engine).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["StepInfo", "current_step", "denoising_step"]


@dataclass(frozen=True)
class StepInfo:
    """One denoising step.

    Attributes:
        index: 0-based step index, counted from the noisiest step of the full trajectory (a
            sampler that starts late, e.g. img2img or LR guidance, passes its real position).
        num_steps: number of steps of the full trajectory.
        cfg: ``True`` when the UNet call is a classifier-free-guidance batch ``[uncond, cond]``
            (every batch-shaped argument stacks the unconditional half first); ``False`` when
            it is not; ``None`` when the caller does not say.
    """

    index: int
    num_steps: int
    cfg: bool | None = None

    def __post_init__(self):
        if not (isinstance(self.num_steps, int) and self.num_steps >= 1):
            raise ValueError(f"num_steps must be a positive integer, got {self.num_steps!r}")
        if not (isinstance(self.index, int) and 0 <= self.index < self.num_steps):
            raise ValueError(f"step index must be in [0, {self.num_steps}), got {self.index!r}")


_CURRENT: ContextVar[StepInfo | None] = ContextVar("scalecrafter_step", default=None)


@contextmanager
def denoising_step(index: int, num_steps: int, *, cfg: bool | None = None):
    """Declare that the UNet calls inside this block belong to step ``index`` of ``num_steps``.

    ``cfg=True`` says the calls are ``[uncond, cond]`` batches (needed for noise-damped CFG when
    the UNet is not driven by a diffusers pipeline, whose own CFG flag is read otherwise).
    """
    token = _CURRENT.set(StepInfo(int(index), int(num_steps), cfg))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_step() -> StepInfo | None:
    """The step declared by the innermost :func:`denoising_step`, else ``None``."""
    return _CURRENT.get()
