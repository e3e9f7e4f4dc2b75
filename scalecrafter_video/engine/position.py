"""The step a UNet call belongs to, and the step windows of the schedule.

The documented rule, in order:

1. a step declared with :func:`scalecrafter_video.denoising_step` (our loops, users' loops);
2. a diffusers scheduler's ``step_index`` (Euler, Euler-ancestral, EDM, DPM-Solver++, LCM, Heun,
   ...): the index of the step being taken. It is ``None`` until the scheduler's first
   ``step()`` or ``scale_model_input()`` of a trajectory, which means step ``begin_index``
   (0 unless the pipeline started late). It is used when it points at the timestep the UNet
   received;
3. otherwise (DDIM, DDPM, PNDM, ...) the timestep the UNet received is looked up in
   ``scheduler.timesteps``; a repeated value (PNDM's PLMS warm-up, second-order schedulers)
   resolves to its first occurrence after the previously matched step (or to that step itself
   when the value does not occur later: a second UNet call within one step).

The trajectory has ``len(scheduler.timesteps)`` steps. When none of these applies the engine
raises :class:`~scalecrafter_video.errors.ConfigError`: it never guesses, and never does nothing.

Windows: a feature with horizon ``tau`` is on for the first ``round(tau * N)`` steps of an
``N``-step trajectory, halves rounded up (``tau = 0.7``, ``N = 50``: steps 0..34, the paper's
first 35 steps; ``N = 25``: 18 steps); any ``tau > 0`` covers at least step 0.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError
from ..trajectory import StepInfo, current_step

__all__ = ["SchedulerTracker", "active_steps", "stage_index", "window_remaining"]

NO_POSITION_HELP = (
    "apply ScaleCrafter to the pipeline (its scheduler tells the step), or wrap each UNet call of your own "
    "loop in `with scalecrafter_video.denoising_step(i, num_steps, cfg=...)`"
)


def active_steps(tau: float, num_steps: int) -> int:
    """Number of leading steps of an ``num_steps``-step trajectory a ``tau`` window covers."""
    if tau <= 0:
        return 0
    return min(num_steps, max(1, math.floor(tau * num_steps + 0.5 + 1e-9)))


def window_remaining(step: StepInfo, tau: float) -> float | None:
    """``None`` when the ``tau`` window is closed at ``step``; else the fraction of the window
    still ahead, ``(n - i) / n`` in (0, 1], which drives the progressive decay."""
    n = active_steps(tau, step.num_steps)
    if step.index >= n:
        return None
    return (n - step.index) / n


def stage_index(step: StepInfo, untils: list[float]) -> int | None:
    """The stage of a staged schedule covering ``step``: the first whose ``until`` window (the tau
    rule) still contains it; ``None`` past the last one."""
    for i, until in enumerate(untils):
        if step.index < active_steps(until, step.num_steps):
            return i
    return None


def _timestep_float(t) -> float | None:
    if t is None:
        return None
    if torch.is_tensor(t):
        return float(t.reshape(-1)[0]) if t.numel() else None
    try:
        return float(t)
    except (TypeError, ValueError):
        return None


class SchedulerTracker:
    """Reads the position of a diffusers pipeline's scheduler (rules 2 and 3 above)."""

    def __init__(self, owner=None):
        import weakref

        self._owner = weakref.ref(owner) if owner is not None else None
        self._key = None
        self._values: list[float] = []
        self._last = -1

    @property
    def scheduler(self):
        owner = self._owner() if self._owner is not None else None
        return getattr(owner, "scheduler", None)

    def _timesteps(self, scheduler) -> list[float] | None:
        ts = getattr(scheduler, "timesteps", None)
        if ts is None or len(ts) == 0:
            return None
        key = (id(ts), getattr(ts, "_version", None), len(ts))
        if key != self._key:  # one device sync per new schedule, not per UNet call
            values = ts.tolist() if torch.is_tensor(ts) else list(ts)
            self._values = [float(v) for v in values]
            self._key, self._last = key, -1
        return self._values

    def cfg_flag(self) -> bool | None:
        owner = self._owner() if self._owner is not None else None
        try:
            flag = getattr(owner, "do_classifier_free_guidance", None)
        except (AttributeError, TypeError):  # read before the pipeline's __call__ set its scale
            return None
        return bool(flag) if flag is not None else None

    def position(self, t) -> StepInfo | None:
        scheduler = self.scheduler
        if scheduler is None:
            return None
        values = self._timesteps(scheduler)
        if not values:
            return None
        n = len(values)
        t_value = _timestep_float(t)
        tol = 1e-4 * max(1.0, abs(t_value)) if t_value is not None else 0.0
        if hasattr(scheduler, "step_index"):
            index = scheduler.step_index
            if index is None:
                index = getattr(scheduler, "begin_index", None) or 0
            if 0 <= index < n and (t_value is None or abs(values[index] - t_value) <= tol):
                self._last = index
                return StepInfo(int(index), n, self.cfg_flag())
        if t_value is None:
            return None
        hits = [k for k, v in enumerate(values) if abs(v - t_value) <= tol]
        if not hits:
            return None
        # A repeated value (PNDM's warm-up, second-order solvers) is the next occurrence; a second call
        # within the same step (no repeated value after it) stays on the step.
        later = [k for k in hits if k > self._last] or [k for k in hits if k == self._last]
        index = later[0] if later else hits[0]
        self._last = index
        return StepInfo(index, n, self.cfg_flag())


def resolve_step(tracker: SchedulerTracker | None, t) -> StepInfo:
    """The step of the current UNet call by the documented rule, or a ConfigError saying how to tell it."""
    declared = current_step()
    if declared is not None:
        if declared.cfg is None and tracker is not None:
            return StepInfo(declared.index, declared.num_steps, tracker.cfg_flag())
        return declared
    step = tracker.position(t) if tracker is not None else None
    if step is None:
        where = "this UNet has no pipeline scheduler" if tracker is None or tracker.scheduler is None else (
            "the timestep it received is not among the pipeline scheduler's timesteps"
        )
        raise ConfigError(f"ScaleCrafter cannot tell which denoising step this UNet call belongs to ({where}); "
                          f"{NO_POSITION_HELP}")
    return step
