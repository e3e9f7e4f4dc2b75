"""The per-step schedule: which layers run at which dilation (and dispersed) in this UNet call."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..config import ScaleCrafterConfig, progressive_factor
from ..ops.disperse import dispersion_transform
from ..ops.redilate import as_axes
from ..trajectory import StepInfo
from .ndcfg import shared_down_blocks
from .position import active_steps, stage_index, window_remaining

__all__ = ["CallStats", "LayerPlan", "ScaleCrafterState"]


@dataclass
class LayerPlan:
    """A layer's factors (a number, or ``(dh, dw)`` per axis) in the main and the damped pass."""

    main: float | tuple[float, float] = 1.0
    damped: float | tuple[float, float] = 1.0
    disperse: bool = False


@dataclass
class CallStats:
    """What the method did since it was applied (tests and the no-op warning read these)."""

    calls: int = 0
    dilated_calls: int = 0
    damped_calls: int = 0
    dispersed_calls: int = 0
    steps_seen: list[int] = field(default_factory=list)
    dilated_steps: list[int] = field(default_factory=list)
    damped_steps: list[int] = field(default_factory=list)


class ScaleCrafterState:
    """What ScaleCrafter does in the current UNet call; decided once per call from its step."""

    def __init__(self, config: ScaleCrafterConfig, plans: dict[str, LayerPlan], train_latent_area: int, tracker=None,
                 stage_plans: list[dict[str, LayerPlan]] | None = None):
        self.config = config
        self.plans = plans  # the top-level tables (with stages: an empty main table, the top-level ndcfg one)
        self.stage_plans = stage_plans or []  # one per stage of a staged schedule
        self._stage_untils = [stage["until"] for stage in config.stages]
        self.train_latent_area = train_latent_area
        self.tracker = tracker
        self.transform = None
        if any(p.disperse for table in [plans, *self.stage_plans] for p in table.values()):
            self.transform = dispersion_transform(
                3, config.disperse_kernel, config.disperse_input_size, config.disperse_scale, config.disperse_eta
            )
        self.actions: dict[str, tuple[float, bool]] = {}
        self._saved_actions: dict[str, tuple[float, bool]] = {}
        self.pixel_ratio = 1.0
        self.ndcfg_on = False
        self.in_damped_pass = False
        self.acted = False  # anything done in the current trajectory (Attn-SF hooks set it too)
        self.stats = CallStats()
        self.step: StepInfo | None = None
        self.batch = 0  # leading dim of the current call's sample (the CFG batch 2B)
        self.down_blocks = 0  # the UNet's number of down blocks the damped pass may reuse (0: none)
        self.reuse_blocks = 0  # this call: leading down blocks the damped pass takes from the main pass
        self.reused: dict[int, object] = {}  # their unconditional outputs, kept by the main pass
        self._damped_actions: dict[str, tuple[float, bool]] | None = None
        self._warned = False
        self.warned_layers: set[str] = set()
        self._last_index = None
        self._first_index = 0

    # -- per call ---------------------------------------------------------------------------
    def _factor(self, base, remaining: float | None):
        """The factor (a number, or ``(dh, dw)`` per axis) at this step; 1.0 when off."""
        if remaining is None or max(as_axes(base)) <= 1.0:
            return 1.0
        return progressive_factor(base, remaining) if self.config.progressive else base

    def _plans_now(self) -> dict[str, LayerPlan]:
        """The tables of the current step: its stage's, or the top-level ones (no stages, or past the last)."""
        if self.stage_plans:
            i = stage_index(self.step, self._stage_untils)
            if i is not None:
                return self.stage_plans[i]
        return self.plans

    def _actions(self, damped: bool) -> dict[str, tuple[float, bool]]:
        cfg, step = self.config, self.step
        rem = window_remaining(step, cfg.ndcfg_tau if damped else cfg.dilate_tau)
        disperse_on = window_remaining(step, cfg.disperse_tau) is not None
        actions = {}
        for key, plan in self._plans_now().items():
            d = self._factor(plan.damped if damped else plan.main, rem)
            if max(as_axes(d)) > 1.0:  # dispersion is only planned for equal axes (checked at apply)
                actions[key] = (d, plan.disperse and disperse_on and min(as_axes(d)) >= 2.0)
        return actions

    def begin_call(self, step: StepInfo, latent_hw: tuple[int, int]) -> None:
        if self._last_index is None or step.index <= self._last_index:
            self.acted = False  # a new trajectory
            self._first_index = step.index
        self._last_index = step.index
        self.step = step
        self.pixel_ratio = latent_hw[0] * latent_hw[1] / self.train_latent_area
        self.stats.calls += 1
        self.stats.steps_seen.append(step.index)
        if self.config.method == "scalecrafter":
            self.actions = self._actions(False)
            # An empty ndcfg table is meaningful: the damped pass is then the undilated UNet.
            self.ndcfg_on = window_remaining(step, self.config.ndcfg_tau) is not None
        else:
            self.actions, self.ndcfg_on = {}, False
        if self.actions:
            self.acted = True
            self.stats.dilated_calls += 1
            self.stats.dilated_steps.append(step.index)
            self.stats.dispersed_calls += any(d for _, d in self.actions.values())

    def end_call(self) -> None:
        self.actions = {}
        step = self.step
        if step is not None and step.index == step.num_steps - 1 and not self.acted:
            self._warn_noop(step)

    def _warn_noop(self, step: StepInfo) -> None:
        if self._warned:
            return
        self._warned = True
        cfg = self.config
        if cfg.method == "attn-sf" or (cfg.method == "scalecrafter" and not self.plans and not any(self.stage_plans)):
            why = ("the attention scale is 1 at this size (no larger than the training size)"
                   if cfg.uses_attn_scale else "the schedule dilates no layer (empty dilation table)")
        else:
            n = active_steps(cfg.dilate_tau, step.num_steps)
            first = self._first_index
            why = (f"dilate_tau={cfg.dilate_tau} covers steps 0..{n - 1} of {step.num_steps}"
                   + (f" but sampling ran steps {first}..{step.num_steps - 1}" if first >= n else ""))
        warnings.warn(f"ScaleCrafter did not act during this sampling run: {why}", RuntimeWarning, stacklevel=3)

    def plan_damped_pass(self) -> None:
        """Before a main pass that a damped pass will follow: its actions, and how many leading down
        blocks it can take from the main pass (:func:`.ndcfg.shared_down_blocks`)."""
        self._damped_actions = self._actions(True)
        self.reuse_blocks = shared_down_blocks(self.actions, self._damped_actions, self.down_blocks)
        self.reused = {}

    def enter_damped_pass(self) -> None:
        """Switch to the damped pass's actions (the main pass's are kept to restore)."""
        self._saved_actions = self.actions
        damped = self._damped_actions if self._damped_actions is not None else self._actions(True)
        self.actions, self.in_damped_pass = damped, True
        self.stats.damped_calls += 1
        self.stats.damped_steps.append(self.step.index)
        self.acted = True

    def leave_damped_pass(self) -> None:
        """Back to the main pass's actions (a no-op when no damped pass was entered)."""
        if self.in_damped_pass:
            self.actions, self.in_damped_pass = self._saved_actions, False
            self._saved_actions = {}
        self._damped_actions, self.reuse_blocks, self.reused = None, 0, {}

    @contextmanager
    def damped_pass(self):
        self.enter_damped_pass()
        try:
            yield
        finally:
            self.leave_damped_pass()
