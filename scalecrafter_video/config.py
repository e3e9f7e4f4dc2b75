"""ScaleCrafter schedules as data: one config serves image and video UNets.

A schedule names layers by glob over diffusers-style module names (``down_blocks.1.*``,
``mid_block.resnets.0.conv1``); LDM-style UNets (LVDM, VideoCrafter) are matched through the
name mapping in :mod:`scalecrafter_video.naming`, so the same file serves both families.

Taus are fractions of the trajectory counted from the noisiest step: a feature with tau is on
for the first ``round(tau * N)`` of the ``N`` denoising steps (``tau = 0.7`` with 50 steps = the
paper's first 35), whatever the scheduler (see :mod:`scalecrafter_video.engine.position`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["METHODS", "ScaleCrafterConfig", "config_dir", "list_presets"]

METHODS = ("scalecrafter", "direct", "attn-sf")


def config_dir() -> Path:
    """Folder of the shipped presets (``configs/`` of the repository, or $SCALECRAFTER_VIDEO_CONFIGS)."""
    env = os.environ.get("SCALECRAFTER_VIDEO_CONFIGS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "configs"


def list_presets() -> list[str]:
    """Preset names: the ScaleCrafter schedules under :func:`config_dir` (paths without ``.yaml``).

    Other YAML files there (e.g. LVDM/VideoCrafter model configs under ``configs/lvdm/``) are not
    presets and are left out: a preset's top-level keys are schedule fields (or ``base``).
    """
    import yaml

    root = config_dir()
    allowed = {f.name for f in dataclasses.fields(ScaleCrafterConfig)} | {"base"}
    names = []
    for path in root.rglob("*.yaml"):
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue
        if isinstance(data, dict) and set(data) <= allowed:
            names.append(str(path.relative_to(root).with_suffix("")))
    return sorted(names)


def _pair(value, key: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = [value, value]
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be [height, width], got {value!r}") from None
    if h <= 0 or w <= 0:
        raise ConfigError(f"{key} must be positive, got {value!r}")
    return h, w


def _table(value, key: str) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping of module glob -> factor, got {type(value).__name__}")
    out = {}
    for glob, factor in value.items():
        try:
            factor = float(factor)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}[{glob!r}] must be a number, got {factor!r}") from None
        if not factor >= 1.0:
            raise ConfigError(f"{key}[{glob!r}] = {factor}: dilation factors must be >= 1")
        out[str(glob)] = factor
    return out


@dataclass
class ScaleCrafterConfig:
    """A ScaleCrafter schedule.

    Attributes:
        method: ``scalecrafter`` (re-dilation, ndcfg, dispersion as configured), ``direct``
            (Direct-Inf: nothing changed) or ``attn-sf`` (attention entropy scaling only).
        train_size: the model's native ``[height, width]`` in pixels.
        target_size: the resolution the schedule was made for (informational).
        dilation: ``{module glob: factor}`` of the main pass; later globs override earlier ones.
        dilate_tau: fraction of the trajectory, from the noisiest step, with re-dilation on.
        progressive: decay each factor toward 2 over the window (``max(ceil(d * remaining), 2)``).
        ndcfg_dilation, ndcfg_tau: the weaker table of the noise-damped unconditional pass.
        disperse: globs of layers whose 3x3 kernel becomes a dispersed ``disperse_kernel`` kernel
            (run at half the dilation) while ``disperse_tau`` is on and the layer's dilation >= 2.
        disperse_eta: weight of pixel-level calibration; disperse_scale: structure-level scale;
        disperse_input_size: calibration input size (3 reproduces the official transform).
        attn_scale: scale self-attention logits by sqrt(log_{N_train} N) (Attn-SF); implied by
            ``method: attn-sf``.
        vae_scale_factor: pixels per latent (8 for SD-style VAEs, 1 for pixel-space models);
            ``None`` reads it from the pipeline, else 8.
        num_train_timesteps: informational only (older files carry it): the tau windows count
            denoising steps, not timestep values.
    """

    method: str = "scalecrafter"
    train_size: tuple[int, int] | None = None
    target_size: tuple[int, int] | None = None
    dilation: dict[str, float] = field(default_factory=dict)
    dilate_tau: float = 0.7
    progressive: bool = False
    ndcfg_dilation: dict[str, float] = field(default_factory=dict)
    ndcfg_tau: float = 0.0
    disperse: list[str] = field(default_factory=list)
    disperse_tau: float = 0.0
    disperse_kernel: int = 5
    disperse_eta: float = 0.05
    disperse_scale: int = 2
    disperse_input_size: int = 3
    attn_scale: bool = False
    vae_scale_factor: int | None = None
    num_train_timesteps: int | None = None
    name: str | None = None

    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        self.train_size = _pair(self.train_size, "train_size")
        self.target_size = _pair(self.target_size, "target_size")
        self.dilation = _table(self.dilation, "dilation")
        self.ndcfg_dilation = _table(self.ndcfg_dilation, "ndcfg_dilation")
        if isinstance(self.disperse, str) or not isinstance(self.disperse, (list, tuple)):
            raise ConfigError(f"disperse must be a list of module globs, got {self.disperse!r}")
        self.disperse = [str(g) for g in self.disperse]
        for key in ("dilate_tau", "ndcfg_tau", "disperse_tau"):
            value = getattr(self, key)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{key} must be a number in [0, 1], got {value!r}") from None
            if not 0.0 <= value <= 1.0:
                raise ConfigError(
                    f"{key} = {value}: taus are fractions of the trajectory in [0, 1] (35 of 50 steps = 0.7)"
                )
            setattr(self, key, value)
        k = self.disperse_kernel
        if not isinstance(k, int) or k < 5 or k % 2 == 0:
            raise ConfigError(f"disperse_kernel must be an odd integer >= 5, got {k!r}")
        if self.disperse_eta < 0 or int(self.disperse_scale) < 1 or int(self.disperse_input_size) < 3:
            raise ConfigError("disperse_eta must be >= 0, disperse_scale >= 1, disperse_input_size >= 3")
        for key in ("vae_scale_factor", "num_train_timesteps"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{key} must be a positive integer or null, got {value!r}")
        self.progressive = bool(self.progressive)
        self.attn_scale = bool(self.attn_scale)

    @property
    def uses_attn_scale(self) -> bool:
        return self.method == "attn-sf" or (self.method == "scalecrafter" and self.attn_scale)

    @property
    def uses_redilation(self) -> bool:
        return self.method == "scalecrafter" and (
            (self.dilate_tau > 0 and bool(self.dilation)) or self.ndcfg_tau > 0
        )

    # ------------------------------------------------------------------ (de)serialisation
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any], **overrides) -> ScaleCrafterConfig:
        """Build from a plain mapping (e.g. parsed YAML); unknown keys are an error."""
        if d is None:
            d = {}
        if not isinstance(d, dict):
            raise ConfigError(f"a ScaleCrafter config must be a mapping, got {type(d).__name__}")
        d = {**d, **overrides}
        unknown = sorted(set(d) - set(cls.field_names()))
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(cls.field_names())}"
            )
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, _depth: int = 0, **overrides) -> ScaleCrafterConfig:
        """Load a YAML schedule (omegaconf; ``${...}`` interpolation allowed; ``base: <preset>``
        starts from a shipped preset)."""
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException
        from yaml import YAMLError

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
        except (YAMLError, OmegaConfBaseException, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"malformed YAML in {path}: {first}") from None
        if isinstance(data, dict) and "base" in data:
            # ``base: <preset>`` reuses a shipped table; keys given here override it.
            base = data.pop("base")
            if _depth > 8:
                raise ConfigError(f"{path}: 'base' chain too deep (a cycle?)")
            data = {**cls.preset(str(base), _depth=_depth + 1).to_dict(), "name": None, **data}
        cfg = cls.from_dict(data, **overrides)
        if cfg.name is None:
            cfg.name = path.stem
        return cfg

    @classmethod
    def preset(cls, name: str, _depth: int = 0, **overrides) -> ScaleCrafterConfig:
        """A shipped preset by name (see :func:`list_presets`), e.g. ``sd2.1/2048x2048``."""
        path = config_dir() / f"{name}.yaml"
        if not path.is_file():
            names = list_presets()
            raise ConfigError(f"unknown preset {name!r}; available: {', '.join(names) or '(none found)'}")
        cfg = cls.from_yaml(path, _depth=_depth, **overrides)
        cfg.name = name
        return cfg

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("train_size", "target_size"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        from omegaconf import OmegaConf

        text = OmegaConf.to_yaml(OmegaConf.create(self.to_dict()))
        if path is not None:
            Path(path).write_text(text)
        return text

    def replace(self, **changes) -> ScaleCrafterConfig:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ automatic schedule
    @classmethod
    def auto(
        cls,
        train_size: tuple[int, int] | list[int] | int,
        target_size: tuple[int, int] | list[int] | int,
        num_levels: int = 4,
        *,
        method: str = "scalecrafter",
        disperse: bool = False,
        ndcfg: bool | None = None,
        attn_scale: bool = False,
        **overrides,
    ) -> ScaleCrafterConfig:
        """The paper's layer-wise rule for any target size and aspect ratio.

        ``s`` = the larger side ratio target / train. Level 0 (outermost, highest resolution),
        ``conv_in`` and ``conv_out`` are left alone. For ``s < 3`` every inner level gets ``s``
        (the paper's 1024^2 and 1280^2 tables); for ``s >= 3`` the deepest level gets ``s`` and
        each level outward one less, never below 2, with the progressive decay and a damped
        unconditional pass on all but the outermost dilated level (the 2048^2 and 2048x1024
        tables). ``num_levels`` is the UNet's number of resolution levels (``len(down_blocks)``).
        """
        th, tw = _pair(train_size, "train_size")
        gh, gw = _pair(target_size, "target_size")
        if num_levels < 2:
            raise ConfigError(f"num_levels must be >= 2, got {num_levels}")
        s = max(gh / th, gw / tw)
        base = dict(method=method, train_size=(th, tw), target_size=(gh, gw), attn_scale=attn_scale)
        base["name"] = f"auto-{gh}x{gw}-from-{th}x{tw}"
        if s <= 1.0 + 1e-9 or method != "scalecrafter":
            return cls.from_dict({**base, "dilation": {}, "dilate_tau": 0.0}, **overrides)
        s = round(s, 4)
        deepest = num_levels - 1
        if s < 3:
            values = {level: s for level in range(1, num_levels)}
            tau, progressive = (0.6 if s <= 2 else 0.7), False
        else:
            values = {level: max(s - (deepest - level), 2.0) for level in range(1, num_levels)}
            tau, progressive = 0.7, True
        use_ndcfg = (s >= 3) if ndcfg is None else ndcfg
        main = level_table(values, num_levels)
        damped = level_table({lv: d for lv, d in values.items() if lv >= 2}, num_levels) if use_ndcfg else {}
        cfg = dict(
            base,
            dilation=main,
            dilate_tau=tau,
            progressive=progressive,
            ndcfg_dilation=damped,
            ndcfg_tau=tau if use_ndcfg else 0.0,
        )
        if disperse:
            cfg["disperse"] = [g for g, d in main.items() if d >= 3] or list(main)
            cfg["disperse_tau"] = tau
        return cls.from_dict(cfg, **overrides)


def level_table(values: dict[int, float], num_levels: int) -> dict[str, float]:
    """``{level: factor}`` -> diffusers globs: down block ``l`` and up block ``n-1-l`` share level ``l``;
    the mid block belongs to the deepest level. Resamplers go with their block."""
    table: dict[str, float] = {}
    for level in sorted(values):
        table[f"down_blocks.{level}.*"] = values[level]
    if num_levels - 1 in values:
        table["mid_block.*"] = values[num_levels - 1]
    for level in sorted(values, reverse=True):
        table[f"up_blocks.{num_levels - 1 - level}.*"] = values[level]
    return table


def progressive_factor(d: float, remaining: float) -> float:
    """The paper's decay: ``max(ceil(d * remaining), 2)``; ``remaining`` = (tau - i) / tau in (0, 1]."""
    if d <= 1:
        return 1.0
    return float(max(math.ceil(d * remaining - 1e-9), 2))
