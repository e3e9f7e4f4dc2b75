"""Switching ScaleCrafter on and off on a UNet (image or video, diffusers or LDM-style).

``apply_scalecrafter`` walks the UNet once and

* patches ``_conv_forward`` of every spatial 3x3 conv a schedule names (:mod:`.conv_patch`);
* hooks the query projection of spatial self-attention for Attn-SF (:mod:`.attn_sf`);
* adds a forward pre-hook and a forward hook on the UNet: the pre-hook finds the call's step
  (:mod:`.position`) and decides each layer's dilation (:mod:`.schedule`); the hook runs the
  noise-damped unconditional pass on CFG batches (:mod:`.ndcfg`).

Everything ``apply`` did is kept in one undo record on the UNet; ``remove_scalecrafter`` undoes
exactly that. A failing ``apply`` leaves the previous installation in place.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..config import ScaleCrafterConfig
from ..errors import ConfigError
from .attn_sf import hook_self_attentions
from .conv_patch import check_conv, patch_conv, unpatch_conv
from .layers import match_sites, resolve_table, spatial_convs
from .ndcfg import combine_damped, output_tensor, uncond_half, with_output_tensor, wrap_down_block
from .position import SchedulerTracker, resolve_step
from .schedule import LayerPlan, ScaleCrafterState

__all__ = ["apply_scalecrafter", "find_unet", "remove_scalecrafter", "scalecrafter_state"]

_RECORD = "_scalecrafter"

# Native sizes (pixels) of UNet classes whose config.sample_size does not say it.
NATIVE_SIZES = {
    "UNetSpatioTemporalConditionModel": (576, 1024),  # Stable Video Diffusion (sample_size 96)
    "I2VGenXLUNet": (704, 1280),  # I2VGen-XL (sample_size 32)
}


# ----------------------------------------------------------------------------- UNet hooks
@functools.lru_cache(maxsize=None)
def _forward_parameters(cls: type) -> tuple[inspect.Signature, list[str]]:
    """``forward``'s signature and parameter names of a UNet class (read once per class, not per call)."""
    sig = inspect.signature(cls.forward)
    return sig, [p for p in sig.parameters if p != "self"]


def _bind(unet: nn.Module, args, kwargs):
    sig, names = _forward_parameters(type(unet))
    bound = sig.bind_partial(unet, *args, **kwargs)
    sample = bound.arguments.get(names[0])
    t = bound.arguments.get(names[1]) if len(names) > 1 else None
    if t is None:
        for alt in ("timestep", "timesteps", "t"):
            if alt in kwargs:
                t = kwargs[alt]
    return sample, t


def _make_hooks(state: ScaleCrafterState):
    """The UNet's forward pre-hook and forward hook.

    Compile-friendly: every per-call decision (which step, which layers dilate, whether a damped
    pass is due, the statistics) runs outside Dynamo (``torch.compiler.disable``), so a compiled UNet
    never guards on step counters and never traces the bookkeeping. What the compiled graphs read
    is only ``state.actions``, a fresh ``{layer: (factor, dispersed)}`` dict per phase: Dynamo guards
    on its contents, so a trajectory compiles one graph per distinct phase (plain, dilated at each
    progressive factor, damped) and reuses them at every later step. The post-hook itself is skipped
    by Dynamo but not its callees (``recursive=False``), so the damped pass's UNet call runs
    compiled like the main one.
    """

    @torch.compiler.disable
    def pre_hook(unet, args, kwargs):
        if state.in_damped_pass:
            return None
        state.leave_damped_pass()  # drops any reuse left by a call that raised
        sample, t = _bind(unet, args, kwargs)
        state.batch = sample.shape[0]
        try:
            step = resolve_step(state.tracker, t)
        except ConfigError:
            if state.config.method == "scalecrafter":
                raise
            step = None  # Attn-SF needs no step; the position only feeds the no-op check
        if step is None:
            state.step = None
            state.pixel_ratio = sample.shape[-2] * sample.shape[-1] / state.train_latent_area
            return None
        state.begin_call(step, tuple(sample.shape[-2:]))
        if state.ndcfg_on and step.cfg is None:
            raise ConfigError(
                "noise-damped CFG needs to know whether this UNet call is a [uncond, cond] batch: "
                "pass cfg=True/False to scalecrafter_video.denoising_step(...)"
            )
        if state.ndcfg_on and step.cfg and sample.shape[0] % 2:
            raise ConfigError(f"a CFG batch must have an even batch size, got {sample.shape[0]}")
        if state.ndcfg_on and step.cfg:
            state.plan_damped_pass()
        return None

    @torch.compiler.disable
    def damped_inputs(args, kwargs):
        """After the main pass: the damped pass's ``(args, kwargs)`` (the unconditional halves), with
        the damped phase entered, when one is due; else ``None``, and the call is over."""
        if state.in_damped_pass or state.step is None:
            return None
        if not (state.ndcfg_on and state.step.cfg):
            state.leave_damped_pass()  # resets the per-call reuse (nothing to leave)
            state.end_call()
            return None
        state.enter_damped_pass()
        return uncond_half(args, state.batch), uncond_half(kwargs, state.batch)

    @torch.compiler.disable
    def finish(output, damped):
        state.leave_damped_pass()
        state.end_call()
        if damped is None:
            return None
        return with_output_tensor(output, combine_damped(output_tensor(output), output_tensor(damped)))

    @torch.compiler.disable(recursive=False)
    def post_hook(unet, args, kwargs, output):
        inputs = damped_inputs(args, kwargs)
        if inputs is None:
            return None
        damped = None
        try:
            damped = unet(*inputs[0], **inputs[1])
        finally:
            result = finish(output, damped)
        return result

    return pre_hook, post_hook


# ----------------------------------------------------------------------------- install / remove
@dataclass
class _Installation:
    config: ScaleCrafterConfig
    state: ScaleCrafterState | None
    handles: list
    patched: list[nn.Module]
    undos: list = dataclasses.field(default_factory=list)

    def undo(self) -> None:
        for handle in self.handles:
            handle.remove()
        for conv in self.patched:
            unpatch_conv(conv)
        for undo in reversed(self.undos):
            undo()


def _uncompiled(module):
    """The module inside a ``torch.compile`` wrapper (``OptimizedModule._orig_mod``): ScaleCrafter
    patches and hooks the original, which the compiled wrapper calls."""
    return getattr(module, "_orig_mod", module) if isinstance(module, nn.Module) else module


def find_unet(target) -> tuple[nn.Module, object | None]:
    """``(unet, owner)``: the UNet of a pipeline-like object (``.unet``), or the UNet module itself."""
    unet = getattr(target, "unet", None)
    if isinstance(unet, nn.Module):
        return _uncompiled(unet), target
    target = _uncompiled(target)
    if isinstance(target, nn.Module):
        if not (hasattr(target, "down_blocks") or hasattr(target, "input_blocks")):
            raise TypeError(
                f"apply_scalecrafter needs a UNet (with down_blocks or input_blocks) or a pipeline with .unet, "
                f"got {type(target).__name__}"
            )
        return target, None
    raise TypeError(f"apply_scalecrafter needs a UNet module or a pipeline with .unet, got {type(target).__name__}")


def _as_config(config) -> ScaleCrafterConfig:
    if isinstance(config, ScaleCrafterConfig):
        return config
    if isinstance(config, dict):
        return ScaleCrafterConfig.from_dict(config)
    if isinstance(config, (str, Path)):
        return ScaleCrafterConfig.from_yaml(config)
    raise TypeError(f"config must be a ScaleCrafterConfig, dict or YAML path, got {type(config).__name__}")


def native_size(unet: nn.Module, owner, vae_factor: int) -> tuple[int, int] | None:
    """The model's native ``(H, W)`` pixels: the pipeline's ``train_size``, the family's, or the UNet's sample size."""
    size = getattr(owner, "train_size", None)
    if size is not None:
        return tuple(size)
    if type(unet).__name__ in NATIVE_SIZES:
        return NATIVE_SIZES[type(unet).__name__]
    sample_size = getattr(getattr(unet, "config", None), "sample_size", None)
    if isinstance(sample_size, int):
        return sample_size * vae_factor, sample_size * vae_factor
    if isinstance(sample_size, (list, tuple)) and len(sample_size) == 2:
        return sample_size[0] * vae_factor, sample_size[1] * vae_factor
    return None


def _train_latent_area(config: ScaleCrafterConfig, unet, owner) -> int:
    vae_factor = config.vae_scale_factor or getattr(owner, "vae_scale_factor", None) or 8
    train_size = config.train_size or native_size(unet, owner, vae_factor)
    if train_size is None and config.uses_attn_scale:
        raise ConfigError("train_size is needed for attention scaling; set it in the config")
    return (train_size[0] // vae_factor) * (train_size[1] // vae_factor) if train_size else 1


def _plans(config: ScaleCrafterConfig, sites, dilation: dict, ndcfg_dilation: dict,
           where: str = "") -> dict[str, LayerPlan]:
    """Each touched layer's factors in the main and the damped pass (``where`` prefixes error names,
    e.g. ``stages[1].`` for a stage's tables)."""
    main = resolve_table(dilation, sites, f"{where}dilation")
    damped = resolve_table(ndcfg_dilation, sites, f"{where}ndcfg_dilation")
    dispersed: set[str] = set()
    for glob in config.disperse:
        dispersed.update(s.key for s in match_sites(glob, sites, "disperse"))
    plans = {
        key: LayerPlan(main.get(key, 1.0), damped.get(key, 1.0), key in dispersed)
        for key in set(main) | set(damped) | dispersed
    }
    for key in dispersed:
        if isinstance(plans[key].main, tuple) or isinstance(plans[key].damped, tuple):
            raise ConfigError(
                f"disperse: {key} has per-axis factors; dispersion is refused there because its least-squares "
                "transform maps a square kernel at one dilation to a larger square one (give the layer one factor, "
                "or leave it out of disperse)"
            )
    return plans


def _stage_plans(config: ScaleCrafterConfig, sites) -> list[dict[str, LayerPlan]]:
    """One plan per stage of a staged schedule (a stage without ``ndcfg_dilation`` uses the top-level one)."""
    return [_plans(config, sites, stage["dilation"], stage.get("ndcfg_dilation", config.ndcfg_dilation),
                   f"stages[{i}].") for i, stage in enumerate(config.stages)]


def _install(unet: nn.Module, owner, config: ScaleCrafterConfig) -> _Installation:
    if config.method == "direct":
        return _Installation(config, None, [], [])
    sites = spatial_convs(unet) if config.method == "scalecrafter" else []
    plans = _plans(config, sites, config.dilation, config.ndcfg_dilation) if sites else {}
    stage_plans = _stage_plans(config, sites) if sites else []
    tracker = SchedulerTracker(owner) if owner is not None else None
    state = ScaleCrafterState(config, plans, _train_latent_area(config, unet, owner), tracker, stage_plans)
    record = _Installation(config, state, [], [])
    try:
        for site in sites:
            found = [p[site.key] for p in [plans, *stage_plans] if site.key in p]
            if not found:
                continue
            padding = check_conv(site, found[0].disperse and config.disperse_tau > 0)
            patch_conv(site.module, state, site.key, padding)
            record.patched.append(site.module)
        if config.uses_attn_scale:
            record.handles.extend(hook_self_attentions(unet, state))
        down_blocks = getattr(unet, "down_blocks", None)
        if config.method == "scalecrafter" and config.ndcfg_tau > 0 and isinstance(down_blocks, nn.ModuleList):
            # diffusers layout: the damped pass may take leading down blocks from the main pass
            state.down_blocks = len(down_blocks)
            record.undos.extend(wrap_down_block(block, k, state) for k, block in enumerate(down_blocks))
        pre, post = _make_hooks(state)
        record.handles.append(unet.register_forward_pre_hook(pre, with_kwargs=True))
        record.handles.append(unet.register_forward_hook(post, with_kwargs=True))
    except Exception:
        record.undo()
        raise
    return record


def apply_scalecrafter(target, config) -> object:
    """Switch ScaleCrafter (or a baseline) on for a diffusers pipeline or a UNet module.

    Args:
        target: a pipeline-like object with ``.unet`` (its scheduler then tells the step and its
            ``do_classifier_free_guidance`` the CFG layout), or a UNet ``nn.Module`` (diffusers or
            LDM-style) driven by a loop that declares its steps with
            :func:`scalecrafter_video.denoising_step`.
        config: a :class:`ScaleCrafterConfig`, a dict, or a YAML path.

    Returns:
        ``target``. Calling again replaces the previous installation; a call that fails leaves
        the previous installation exactly in place.
    """
    config = _as_config(config)
    unet, owner = find_unet(target)
    previous = unet.__dict__.pop(_RECORD, None)
    if previous is not None:
        previous.undo()
    try:
        record = _install(unet, owner, config)
    except Exception:
        if previous is not None:  # transactional: put the previous installation back
            setattr(unet, _RECORD, _install(unet, owner, previous.config))
        raise
    setattr(unet, _RECORD, record)
    return target


def remove_scalecrafter(target) -> object:
    """Undo :func:`apply_scalecrafter` exactly (a no-op when it is not applied). Returns ``target``."""
    unet, _ = find_unet(target)
    record = unet.__dict__.pop(_RECORD, None)
    if record is not None:
        record.undo()
    return target


def scalecrafter_state(target) -> ScaleCrafterState | None:
    """The live per-call state of an applied ScaleCrafter (``None`` when off or Direct-Inf)."""
    unet, _ = find_unet(target)
    record = unet.__dict__.get(_RECORD)
    return record.state if record is not None else None
