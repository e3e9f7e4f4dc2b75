"""Switching ScaleCrafter on and off on a UNet (image or video, diffusers or LDM-style).

``apply_scalecrafter`` walks the UNet once and

* patches ``_conv_forward`` of every spatial 3x3 conv a schedule names (the module, its class,
  its parameters and its ``state_dict`` keys stay as they are; LoRA/PEFT wrappers and offload
  hooks keep working because the effective weight is what reaches ``_conv_forward``);
* hooks the query projection of spatial self-attention layers for Attn-SF;
* adds a forward pre-hook and a forward hook on the UNet: the pre-hook reads the timestep the
  UNet receives and decides, for this call, each layer's dilation (and dispersion); the hook runs
  the noise-damped unconditional pass when the call is a ``[uncond, cond]`` CFG batch.

Temporal convolutions (kernel with no spatial extent), temporal attention, ``conv_in`` /
``conv_out`` and the frame axis are never touched. Everything ``apply`` did is kept in one undo
record on the UNet, and ``remove_scalecrafter`` undoes exactly that.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import torch
from torch import nn

from .config import ScaleCrafterConfig, progressive_factor
from .errors import ConfigError
from .naming import diffusers_name, is_temporal_path, ldm_layout
from .ops.attention import entropy_scale
from .ops.disperse import disperse_weight, dispersion_transform
from .ops.redilate import redilated_conv

__all__ = [
    "apply_scalecrafter",
    "find_unet",
    "remove_scalecrafter",
    "scalecrafter_state",
    "spatial_convs",
    "unet_levels",
]

_RECORD = "_scalecrafter"
_BLOCK_PREFIXES = ("down_blocks.", "mid_block.", "up_blocks.")


# ----------------------------------------------------------------------------- layer discovery
@dataclass(frozen=True)
class ConvSite:
    """A conv ScaleCrafter may act on. ``key`` is its diffusers-scheme name (the schedule's name)."""

    name: str
    key: str
    module: nn.Module


def _spatial_kernel(conv: nn.Module) -> tuple[int, int] | None:
    if isinstance(conv, nn.Conv2d):
        return tuple(conv.kernel_size)
    if isinstance(conv, nn.Conv3d):
        return tuple(conv.kernel_size[1:])
    return None


def _site_key(name: str, layout) -> str:
    # PEFT LoRA: ``conv1.base_layer`` and ``conv1.lora_A.<adapter>`` act as one conv ``conv1``;
    # lora_B is 1x1 and commutes with the spatial resizes, so dilating both 3x3 parts is exact.
    if ".lora_A." in name:
        name = name.split(".lora_A.")[0]
    return diffusers_name(name, layout)


def spatial_convs(unet: nn.Module) -> list[ConvSite]:
    """Every conv inside the down/mid/up blocks with a spatial kernel > 1, outside temporal layers."""
    modules = dict(unet.named_modules())
    layout = ldm_layout(modules)
    sites = []
    for name, module in modules.items():
        kernel = _spatial_kernel(module)
        if kernel is None or max(kernel) <= 1:
            continue
        key = _site_key(name, layout)
        if not key.startswith(_BLOCK_PREFIXES):
            continue  # conv_in, conv_out and auxiliary stacks (e.g. I2VGen-XL image latents)
        ancestors = [type(modules[p]).__name__ for p in _prefixes(name) if p in modules]
        if is_temporal_path(name, ancestors):
            continue
        sites.append(ConvSite(name, key, module))
    return sites


def _prefixes(name: str):
    parts = name.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


def _self_attentions(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    modules = dict(unet.named_modules())
    found = []
    for name, module in modules.items():
        if name.rsplit(".", 1)[-1] != "attn1" or not isinstance(getattr(module, "to_q", None), nn.Linear):
            continue
        ancestors = [type(modules[p]).__name__ for p in _prefixes(name) if p in modules]
        if is_temporal_path(name, ancestors):
            continue
        found.append((name, module))
    return found


def _matches(glob: str, site: ConvSite) -> bool:
    return fnmatchcase(site.key, glob) or fnmatchcase(site.name, glob)


def _resolve_table(table: dict[str, float], sites: list[ConvSite], what: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for glob, factor in table.items():
        hit = [s for s in sites if _matches(glob, s)]
        if not hit:
            raise ConfigError(_no_match(glob, what, sites))
        for s in hit:  # later globs override earlier ones
            out[s.key] = factor
    return out


def _no_match(glob: str, what: str, sites: list[ConvSite]) -> str:
    keys = sorted({s.key for s in sites})
    sample = ", ".join(keys[:3] + (["..."] if len(keys) > 3 else []))
    return (
        f"{what} entry {glob!r} matches no re-dilatable conv of this UNet "
        f"({len(keys)} candidates, e.g. {sample}); conv_in, conv_out, 1x1 and temporal convs are never dilated"
    )


# ----------------------------------------------------------------------------- per-call state
@dataclass
class LayerPlan:
    main: float = 1.0
    damped: float = 1.0
    disperse: bool = False


class ScaleCrafterState:
    """What ScaleCrafter does in the current UNet call; decided once per call from the timestep."""

    def __init__(self, config, plans, num_train_timesteps, train_latent_area, owner=None):
        self.config: ScaleCrafterConfig = config
        self.plans: dict[str, LayerPlan] = plans
        self.num_train_timesteps = num_train_timesteps
        self.train_latent_area = train_latent_area
        self._owner = weakref.ref(owner) if owner is not None else None
        self.transform = None
        if any(p.disperse for p in plans.values()):
            self.transform = dispersion_transform(
                3, config.disperse_kernel, config.disperse_input_size, config.disperse_scale, config.disperse_eta
            )
        self.actions: dict[str, tuple[float, bool]] = {}
        self.pixel_ratio = 1.0
        self.ndcfg_on = False
        self.in_damped_pass = False
        self._call = None
        self._ts_key, self._ts_values = None, []

    # -- schedule position ---------------------------------------------------------------
    def _sampler_timesteps(self) -> list[float] | None:
        owner = self._owner() if self._owner is not None else None
        ts = getattr(getattr(owner, "scheduler", None), "timesteps", None)
        if ts is None or len(ts) == 0:
            return None
        key = (id(ts), getattr(ts, "_version", None), len(ts))
        if key != self._ts_key:  # one device sync per new schedule, not per UNet call
            self._ts_values = [float(v) for v in (ts.tolist() if torch.is_tensor(ts) else ts)]
            self._ts_key = key
        return self._ts_values

    def window(self, t: float, tau: float) -> float | None:
        """``None`` when a feature with horizon ``tau`` is off at ``t``; else the fraction of its
        window still ahead, ``(tau_steps - i) / tau_steps`` in (0, 1] (for the progressive decay)."""
        if tau <= 0:
            return None
        total = self.num_train_timesteps
        start = (1.0 - tau) * total
        if t < start - 1e-6:
            return None
        ts = self._sampler_timesteps()
        if ts:
            window = [v for v in ts if v >= start - 1e-6]
            i = min(range(len(ts)), key=lambda k: abs(ts[k] - t))
            if window and i < len(window):
                return (len(window) - i) / len(window)
        # Unknown sampler: position in the window measured on the timestep axis.
        return min(max((t - start) / max(total - start, 1e-6), 1e-6), 1.0)

    def _factor(self, base: float, remaining: float | None) -> float:
        if remaining is None or base <= 1.0:
            return 1.0
        return progressive_factor(base, remaining) if self.config.progressive else base

    def _actions(self, damped: bool, t: float) -> dict[str, tuple[float, bool]]:
        cfg = self.config
        rem = self.window(t, cfg.ndcfg_tau if damped else cfg.dilate_tau)
        disperse_on = self.window(t, cfg.disperse_tau) is not None
        actions = {}
        for key, plan in self.plans.items():
            d = self._factor(plan.damped if damped else plan.main, rem)
            if d > 1.0:
                actions[key] = (d, plan.disperse and disperse_on and d >= 2.0)
        return actions

    def begin_call(self, t: float, latent_hw: tuple[int, int]) -> None:
        self.pixel_ratio = latent_hw[0] * latent_hw[1] / self.train_latent_area
        if self.config.method == "scalecrafter":
            self.actions = self._actions(False, t)
            self.ndcfg_on = self.window(t, self.config.ndcfg_tau) is not None
        else:
            self.actions, self.ndcfg_on = {}, False

    def end_call(self) -> None:
        self.actions = {}

    @contextmanager
    def damped_pass(self, t: float):
        saved = self.actions
        self.actions, self.in_damped_pass = self._actions(True, t), True
        try:
            yield
        finally:
            self.actions, self.in_damped_pass = saved, False


# ----------------------------------------------------------------------------- conv patch
def _patched_conv_forward(state: ScaleCrafterState, key: str):
    def _conv_forward(self, input, weight, bias):
        action = state.actions.get(key)
        if action is None:
            return type(self)._conv_forward(self, input, weight, bias)
        d, dispersed = action
        if dispersed:
            weight, d = disperse_weight(weight, state.transform), d / 2.0
        is3d = weight.ndim == 5
        return redilated_conv(
            input,
            weight,
            bias,
            stride=tuple(self.stride),
            padding=self._scalecrafter_padding,
            groups=self.groups,
            dilation=d,
            reference_kernel=tuple(self.kernel_size[-2:]),
            temporal_dilation=self.dilation[0] if is3d else 1,
        )

    return _conv_forward


def _check_conv(site: ConvSite, dispersed: bool) -> tuple[int, ...]:
    conv = site.module
    if conv.padding_mode != "zeros":
        raise ConfigError(
            f"{site.name}: padding_mode={conv.padding_mode!r} is not supported (re-dilation changes the padding, "
            "which PyTorch ignores for non-zero padding modes)"
        )
    if any(d != 1 for d in conv.dilation[-2:]):
        raise ConfigError(f"{site.name} is already dilated ({conv.dilation}); only undilated convs can be re-dilated")
    kh, kw = conv.kernel_size[-2:]
    if kh != kw or kh % 2 == 0:
        raise ConfigError(f"{site.name}: only square odd spatial kernels can be re-dilated, got {conv.kernel_size}")
    if dispersed and kh != 3:
        raise ConfigError(f"{site.name}: dispersion needs a 3x3 kernel, got {kh}x{kw}")
    padding = conv.padding
    if isinstance(padding, str):  # 'same' (stride 1) or 'valid'
        padding = tuple((k - 1) // 2 if padding == "same" else 0 for k in conv.kernel_size)
    return tuple(padding)


# ----------------------------------------------------------------------------- UNet hooks
def _bind(unet: nn.Module, args, kwargs):
    sig = inspect.signature(type(unet).forward)
    bound = sig.bind_partial(unet, *args, **kwargs)
    names = [p for p in sig.parameters if p != "self"]
    sample = bound.arguments.get(names[0])
    t = bound.arguments.get(names[1]) if len(names) > 1 else None
    if t is None:
        for alt in ("timestep", "timesteps", "t"):
            if alt in kwargs:
                t = kwargs[alt]
    return sample, t


def _timestep_value(t) -> float:
    if t is None:
        raise ConfigError("ScaleCrafter could not find the timestep among the UNet's arguments")
    if torch.is_tensor(t):
        return float(t.reshape(-1)[0])
    return float(t)


def _first_half(value, batch: int):
    if torch.is_tensor(value):
        return value[: batch // 2] if value.ndim > 0 and value.shape[0] == batch else value
    if isinstance(value, dict):
        return {k: _first_half(v, batch) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_first_half(v, batch) for v in value)
    return value


def _output_tensor(output):
    if torch.is_tensor(output):
        return output
    if isinstance(output, tuple):
        return output[0]
    return output.sample


def _with_output_tensor(output, new):
    if torch.is_tensor(output):
        return new
    if isinstance(output, tuple):
        return (new, *output[1:])
    if dataclasses.is_dataclass(output):
        return type(output)(**{**{f.name: getattr(output, f.name) for f in dataclasses.fields(output)}, "sample": new})
    output.sample = new
    return output


def _is_cfg_batch(sample: torch.Tensor) -> bool:
    """Pipelines run CFG as one batch ``[uncond, cond]`` over duplicated latents."""
    n = sample.shape[0]
    return n % 2 == 0 and n > 0 and torch.equal(sample[: n // 2], sample[n // 2 :])


def _make_hooks(state: ScaleCrafterState):
    def pre_hook(unet, args, kwargs):
        if state.in_damped_pass:
            return None
        sample, t = _bind(unet, args, kwargs)
        t = _timestep_value(t)
        state.begin_call(t, tuple(sample.shape[-2:]))
        state._call = (sample, t)
        return None

    def post_hook(unet, args, kwargs, output):
        if state.in_damped_pass:
            return None
        try:
            sample, t = state._call
            if not (state.ndcfg_on and _is_cfg_batch(sample)):
                return None
            batch = sample.shape[0]
            with state.damped_pass(t):
                damped = unet(*_first_half(args, batch), **_first_half(kwargs, batch))
            eps = _output_tensor(output)
            eps_uncond, eps_text = eps.chunk(2)
            eps_damped = _output_tensor(damped).to(eps.dtype)
            # pipeline CFG  u' + w (c' - u')  with u' = damped, c' = damped + (text - uncond)
            # gives  eps_damped + w (eps_text - eps_uncond):  Eq. (7) of the paper.
            new = torch.cat([eps_damped, eps_damped + (eps_text - eps_uncond)])
            return _with_output_tensor(output, new)
        finally:
            state.end_call()
            state._call = None

    return pre_hook, post_hook


def _attn_hook(state: ScaleCrafterState):
    def hook(module, inputs, output):
        factor = entropy_scale(output.shape[-2], state.pixel_ratio)
        return output * factor if factor != 1.0 else None

    return hook


# ----------------------------------------------------------------------------- install / remove
@dataclass
class _Installation:
    config: ScaleCrafterConfig
    state: ScaleCrafterState | None
    handles: list
    patched: list[nn.Module]

    def undo(self) -> None:
        for handle in self.handles:
            handle.remove()
        for conv in self.patched:
            conv.__dict__.pop("_conv_forward", None)
            conv.__dict__.pop("_scalecrafter_padding", None)


def find_unet(target) -> tuple[nn.Module, object | None]:
    """``(unet, owner)``: the UNet of a pipeline-like object (``.unet``), or the module itself."""
    unet = getattr(target, "unet", None)
    if isinstance(unet, nn.Module):
        return unet, target
    if isinstance(target, nn.Module):
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


def _resolved_settings(config: ScaleCrafterConfig, unet, owner):
    scheduler = getattr(owner, "scheduler", None)
    num_train = config.num_train_timesteps or getattr(getattr(scheduler, "config", None), "num_train_timesteps", None)
    vae_factor = config.vae_scale_factor or getattr(owner, "vae_scale_factor", None) or 8
    train_size = config.train_size or getattr(owner, "train_size", None)
    if train_size is None:
        sample_size = getattr(getattr(unet, "config", None), "sample_size", None)
        if isinstance(sample_size, int):
            train_size = (sample_size * vae_factor, sample_size * vae_factor)
        elif isinstance(sample_size, (list, tuple)) and len(sample_size) == 2:
            train_size = (sample_size[0] * vae_factor, sample_size[1] * vae_factor)
    if train_size is None and config.uses_attn_scale:
        raise ConfigError("train_size is needed for attention scaling; set it in the config")
    area = (train_size[0] // vae_factor) * (train_size[1] // vae_factor) if train_size else 1
    return int(num_train or 1000), area


def apply_scalecrafter(target, config) -> object:
    """Switch ScaleCrafter (or a baseline) on for a diffusers pipeline or a UNet module.

    Args:
        target: a pipeline-like object with ``.unet`` (its ``.scheduler.timesteps`` then gives the
            exact step index), or a UNet ``nn.Module`` (diffusers or LDM-style).
        config: a :class:`ScaleCrafterConfig`, a dict, or a YAML path.

    Returns:
        ``target``. Calling again replaces the previous installation (idempotent).
    """
    config = _as_config(config)
    unet, owner = find_unet(target)
    remove_scalecrafter(unet)
    num_train, train_area = _resolved_settings(config, unet, owner)

    handles, patched = [], []
    state = None
    if config.method != "direct":
        plans: dict[str, LayerPlan] = {}
        sites = spatial_convs(unet) if config.method == "scalecrafter" else []
        if config.method == "scalecrafter":
            main = _resolve_table(config.dilation, sites, "dilation")
            damped = _resolve_table(config.ndcfg_dilation, sites, "ndcfg_dilation")
            dispersed: set[str] = set()
            for glob in config.disperse:
                hit = [s.key for s in sites if _matches(glob, s)]
                if not hit:
                    raise ConfigError(_no_match(glob, "disperse", sites))
                dispersed.update(hit)
            for key in set(main) | set(damped) | dispersed:
                plans[key] = LayerPlan(main.get(key, 1.0), damped.get(key, 1.0), key in dispersed)
        state = ScaleCrafterState(config, plans, num_train, train_area, owner)
        try:
            for site in sites:
                plan = plans.get(site.key)
                if plan is None:
                    continue
                padding = _check_conv(site, plan.disperse and config.disperse_tau > 0)
                conv = site.module
                conv._scalecrafter_padding = padding
                conv._conv_forward = types.MethodType(_patched_conv_forward(state, site.key), conv)
                patched.append(conv)
            if config.uses_attn_scale:
                for name, attn in _self_attentions(unet):
                    if getattr(attn, "norm_q", None) is not None:
                        raise ConfigError(f"{name}: Attn-SF with query normalisation (norm_q) is not supported")
                    handles.append(attn.to_q.register_forward_hook(_attn_hook(state)))
            pre, post = _make_hooks(state)
            handles.append(unet.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(unet.register_forward_hook(post, with_kwargs=True))
        except Exception:
            _Installation(config, state, handles, patched).undo()
            raise
    setattr(unet, _RECORD, _Installation(config, state, handles, patched))
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


def unet_levels(unet: nn.Module) -> int:
    """Number of resolution levels (``len(down_blocks)``; LDM-style: downsamplers + 1)."""
    blocks = getattr(unet, "down_blocks", None)
    if blocks is not None:
        return len(blocks)
    names = [n for n, _ in unet.named_modules()]
    if ldm_layout(names) is None:
        raise ConfigError(f"cannot tell the resolution levels of {type(unet).__name__}")
    return 1 + sum(1 for n in names if n.startswith("input_blocks.") and n.endswith(".0.op"))
