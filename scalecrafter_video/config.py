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
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["METHODS", "ScaleCrafterConfig", "config_dir", "list_presets"]

METHODS = ("scalecrafter", "direct", "attn-sf")


def config_dir() -> Path:
    """Folder of the shipped presets: ``$SCALECRAFTER_VIDEO_CONFIGS``, else the package's own copy
    (``scalecrafter_video/_data/configs``: a link to the repository's ``configs/`` in a checkout,
    a real folder in an installed wheel)."""
    env = os.environ.get("SCALECRAFTER_VIDEO_CONFIGS")
    return Path(env) if env else Path(__file__).resolve().parent / "_data" / "configs"


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


def _got(value) -> str:
    """``value`` for an error message: its repr and, where that could be misread, its type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{value!r} (a boolean)"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    return f"{value!r} ({type(value).__name__})"


def _is_real(value) -> bool:
    """A real number that is not a bool (``True`` is an int to Python, never a factor or a tau here)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_finite_real(value) -> bool:
    """A real number (not a bool) that is neither inf nor nan."""
    if not _is_real(value):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int too large for a float
        return False


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _boolean(value, key: str) -> bool:
    """Only a real boolean: ``bool("false")`` is True, so strings, numbers and null are refused."""
    if isinstance(value, bool):
        return value
    raise ConfigError(f"{key} must be true or false (a YAML boolean, unquoted), got {_got(value)}")


def _real(value, key: str, *, low: float | None = None, high: float | None = None, expected: str) -> float:
    """A finite real number (not a bool, not a string) within ``[low, high]``, as a float."""
    if not _is_finite_real(value):
        raise ConfigError(f"{key} must be {expected}, got {_got(value)}")
    number = float(value)
    if (low is not None and number < low) or (high is not None and number > high):
        raise ConfigError(f"{key} must be {expected}, got {_got(value)}")
    return number


def _integer(value, key: str, *, low: int, expected: str, odd: bool = False) -> int:
    """An integer (not a bool, not a float, not a string) >= ``low``."""
    if not _is_integer(value) or int(value) < low or (odd and int(value) % 2 == 0):
        raise ConfigError(f"{key} must be {expected}, got {_got(value)}")
    return int(value)


def _side(v) -> int | None:
    """One image side: a positive integer (an integral float such as 512.0 is accepted), else None."""
    if _is_integer(v):
        return int(v) if v > 0 else None
    if _is_finite_real(v) and float(v).is_integer() and v > 0:
        return int(v)
    return None


def _pair(value, key: str) -> tuple[int, int] | None:
    """``[height, width]`` of two positive integers, or one positive integer for a square; null -> None.

    Strings are refused outright: ``"32"`` would otherwise iterate to ``(3, 2)``.
    """
    if value is None:
        return None
    expected = "[height, width] of two positive integers (or one positive integer for a square)"
    if isinstance(value, (str, bytes, bool, Mapping)) or not isinstance(value, (numbers.Real, Sequence)):
        raise ConfigError(f"{key} must be {expected}, got {_got(value)}")
    items = [value, value] if isinstance(value, numbers.Real) else list(value)
    sides = [_side(v) for v in items]
    if len(sides) != 2 or None in sides:
        raise ConfigError(f"{key} must be {expected}, got {_got(value)}")
    return sides[0], sides[1]


def _factor(value, where: str) -> float | tuple[float, float]:
    """One dilation factor: a finite real number >= 1, or ``[height, width]`` of two such numbers
    (per-axis re-dilation; equal axes collapse to one number)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        items = list(value)
        if len(items) != 2:
            raise ConfigError(f"{where} must be a number or [height, width], got {_got(value)}")
        dh, dw = (_real(v, where, low=1.0, expected="a finite number >= 1 per axis") for v in items)
        return dh if dh == dw else (dh, dw)
    return _real(value, where, low=1.0, expected="a finite number >= 1 (a dilation factor), or [height, width]")


def _table(value, key: str) -> dict[str, float]:
    """``{module glob: factor}``; null -> ``{}``. Globs must be strings, factors pass :func:`_factor`."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key} must be a mapping of module glob -> factor, got {_got(value)}")
    out = {}
    for glob, factor in value.items():
        if not isinstance(glob, str):
            raise ConfigError(f"{key} keys must be module-name globs (strings), got {_got(glob)}")
        out[glob] = _factor(factor, f"{key}[{glob!r}]")
    return out


STAGE_KEYS = ("until", "dilation", "ndcfg_dilation")


def _stages(value) -> list[dict]:
    """``[{until, dilation[, ndcfg_dilation]}, ...]`` with ``until`` strictly increasing in (0, 1]."""
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) and type(value).__name__ != "ListConfig":
        raise ConfigError(f"stages must be a list of {{until, dilation}} mappings, got {_got(value)}")
    out, previous = [], 0.0
    for i, stage in enumerate(value):
        where = f"stages[{i}]"
        if not isinstance(stage, Mapping):
            raise ConfigError(f"{where} must be a mapping with until and dilation, got {_got(stage)}")
        unknown = sorted(set(stage) - set(STAGE_KEYS), key=repr)
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; a stage has "
                              f"{', '.join(STAGE_KEYS)}")
        if "until" not in stage:
            raise ConfigError(f"{where} needs until: the fraction of the trajectory where it ends")
        until = _real(stage["until"], f"{where}.until", low=0.0, high=1.0, expected="a number in (0, 1]")
        if until <= previous:
            raise ConfigError(f"{where}.until = {until}: stages must end in increasing order within (0, 1] "
                              f"(the previous one ends at {previous})")
        previous = until
        entry = {"until": until, "dilation": _table(stage.get("dilation"), f"{where}.dilation")}
        if stage.get("ndcfg_dilation") is not None:
            entry["ndcfg_dilation"] = _table(stage["ndcfg_dilation"], f"{where}.ndcfg_dilation")
        out.append(entry)
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
        stages: a schedule that changes over the trajectory, ``[{until, dilation[, ndcfg_dilation]}, ...]``:
            stage ``i`` covers the steps from the previous stage's end to the end of an ``until`` window
            (the tau rule, :func:`~scalecrafter_video.engine.position.active_steps`), with
            its own tables (``ndcfg_dilation`` defaults to the top-level one). With stages the top-level
            ``dilation`` stays empty, ``dilate_tau`` is the last ``until`` and ``progressive`` is off
            (a decay is written as stages). What ``tune`` writes.
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
    stages: list[dict] = field(default_factory=list)
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
        """Type-check and normalise every field; one :class:`ConfigError` sentence per problem.

        Idempotent: an already validated config (tuples for the sizes, floats in the tables) passes
        again unchanged, as :meth:`replace` re-runs it.
        """
        if not isinstance(self.method, str) or self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {_got(self.method)}")
        if self.name is not None and not isinstance(self.name, str):
            raise ConfigError(f"name must be a string or null, got {_got(self.name)}")
        self.train_size = _pair(self.train_size, "train_size")
        self.target_size = _pair(self.target_size, "target_size")
        self.dilation = _table(self.dilation, "dilation")
        self.ndcfg_dilation = _table(self.ndcfg_dilation, "ndcfg_dilation")
        if isinstance(self.disperse, (str, bytes)) or not isinstance(self.disperse, (list, tuple)):
            raise ConfigError(f"disperse must be a list of module globs (strings), got {_got(self.disperse)}")
        for glob in self.disperse:
            if not isinstance(glob, str):
                raise ConfigError(f"disperse entries must be module-name globs (strings), got {_got(glob)}")
        self.disperse = list(self.disperse)
        for key in ("dilate_tau", "ndcfg_tau", "disperse_tau"):
            value = getattr(self, key)
            if not _is_finite_real(value):
                raise ConfigError(f"{key} must be a number in [0, 1], got {_got(value)}")
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(
                    f"{key} = {value}: taus are fractions of the trajectory in [0, 1] (35 of 50 steps = 0.7)"
                )
            setattr(self, key, float(value))
        self.disperse_kernel = _integer(self.disperse_kernel, "disperse_kernel", low=5, odd=True,
                                        expected="an odd integer >= 5")
        self.disperse_eta = _real(self.disperse_eta, "disperse_eta", low=0.0, expected="a finite number >= 0")
        self.disperse_scale = _integer(self.disperse_scale, "disperse_scale", low=1, expected="an integer >= 1")
        self.disperse_input_size = _integer(self.disperse_input_size, "disperse_input_size", low=3,
                                            expected="an integer >= 3")
        for key in ("vae_scale_factor", "num_train_timesteps"):
            value = getattr(self, key)
            if value is not None:
                setattr(self, key, _integer(value, key, low=1, expected="a positive integer or null"))
        self.progressive = _boolean(self.progressive, "progressive")
        self.attn_scale = _boolean(self.attn_scale, "attn_scale")
        self.stages = _stages(self.stages)
        if self.stages:
            if self.dilation:
                raise ConfigError("give either dilation (with dilate_tau) or stages, not both: each stage has "
                                  "its own dilation table")
            if self.progressive:
                raise ConfigError("progressive cannot be combined with stages: write the decay as stages")
            self.dilate_tau = self.stages[-1]["until"]

    @property
    def uses_attn_scale(self) -> bool:
        return self.method == "attn-sf" or (self.method == "scalecrafter" and self.attn_scale)

    @property
    def has_dilation_table(self) -> bool:
        """A non-empty main dilation table, at the top level or in any stage."""
        return bool(self.dilation) or any(stage["dilation"] for stage in self.stages)

    @property
    def uses_redilation(self) -> bool:
        return self.method == "scalecrafter" and ((self.dilate_tau > 0 and self.has_dilation_table)
                                                  or self.ndcfg_tau > 0)

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
        unknown = sorted(set(d) - set(cls.field_names()), key=repr)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(cls.field_names())}"
            )
        cfg = cls(**d)
        if cfg.stages and d.get("dilate_tau") is not None and _is_finite_real(d["dilate_tau"]) \
                and float(d["dilate_tau"]) != cfg.dilate_tau:
            raise ConfigError(f"dilate_tau = {d['dilate_tau']} but the last stage ends at until = {cfg.dilate_tau}; "
                              "with stages, dilate_tau is the last until (leave it out)")
        return cfg

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, _depth: int = 0, **overrides) -> ScaleCrafterConfig:
        """Load a YAML schedule file (omegaconf; ``${...}`` interpolation allowed; ``base: <preset>``
        starts from a shipped preset). Errors name the file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        cfg = cls.from_yaml_text(text, source=str(path), _depth=_depth, **overrides)
        if cfg.name is None:
            cfg.name = path.stem
        return cfg

    @classmethod
    def from_yaml_text(cls, text: str, *, source: str = "schedule YAML", _depth: int = 0,
                       **overrides) -> ScaleCrafterConfig:
        """A schedule from YAML text (what :meth:`from_yaml` reads from a file); ``source`` names it in errors."""
        import yaml
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException
        from yaml import YAMLError

        def malformed(exc):
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return ConfigError(f"malformed YAML in {source}: {first}")

        # The raw top level first: omegaconf reads an empty file or null as {} and refuses a scalar
        # with an OSError, so both are told apart here.
        try:
            raw = yaml.safe_load(text)
        except YAMLError as exc:
            raise malformed(exc) from None
        if raw is None or (isinstance(raw, dict) and not raw):
            raise ConfigError(
                f"{source} is an empty schedule; give method: direct for Direct-Inf, or a dilation table "
                f"(or base: <preset>) for ScaleCrafter"
            )
        if not isinstance(raw, dict):
            raise ConfigError(
                f"{source}: a ScaleCrafter config must be a mapping of schedule keys at the top level, "
                f"got {type(raw).__name__}"
            )
        try:
            data = OmegaConf.to_container(OmegaConf.create(text), resolve=True)
        except (YAMLError, OmegaConfBaseException, ValueError) as exc:
            raise malformed(exc) from None
        if not isinstance(data, dict):  # not reachable after the check above; kept as a guard
            raise ConfigError(f"{source}: a ScaleCrafter config must be a mapping, got {type(data).__name__}")
        if "base" in data:
            # ``base: <preset>`` reuses a shipped table; keys given here override it.
            base = data.pop("base")
            if not isinstance(base, str) or not base:
                raise ConfigError(f"{source}: base must be a preset name such as sd2.1/2048x2048, got {_got(base)}")
            if _depth > 8:
                raise ConfigError(f"{source}: 'base' chain too deep (a cycle?)")
            data = {**cls.preset(base, _depth=_depth + 1).to_dict(), "name": None, **data}
        try:
            cfg = cls.from_dict(data, **overrides)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        if (
            cfg.method == "scalecrafter"
            and not cfg.has_dilation_table
            and cfg.ndcfg_tau == 0
            and not cfg.disperse
        ):
            hint = " (or method: attn-sf for attention scaling alone)" if cfg.attn_scale else ""
            raise ConfigError(
                f"{source}: method scalecrafter with an empty dilation table, ndcfg_tau 0 and no disperse "
                f"dilates nothing; use method: direct for Direct-Inf{hint}, or give a dilation table"
            )
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
        def table(t):  # per-axis factors as [height, width] lists
            return {g: list(f) if isinstance(f, tuple) else f for g, f in t.items()}

        for key in ("dilation", "ndcfg_dilation"):
            d[key] = table(d[key])
        d["stages"] = [{k: table(v) if isinstance(v, dict) else v for k, v in stage.items()} for stage in d["stages"]]
        return d

    def to_yaml(self, path: str | os.PathLike | None = None) -> str:
        from omegaconf import OmegaConf

        text = OmegaConf.to_yaml(OmegaConf.create(self.to_dict()))
        if path is not None:
            from .atomic import write_text_atomic

            write_text_atomic(path, text)
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

        ``s`` = the larger side ratio target / train sets the taus, the decay and ndcfg; each
        level's factor follows the rule below per axis (a ``[h, w]`` pair where the side ratios
        differ, so a side that stays at its training size is not dilated). Level 0 (outermost, highest resolution),
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
        tau, progressive = ((0.6 if s <= 2 else 0.7), False) if s < 3 else (0.7, True)
        # Per axis: the rule on each side ratio alone, so a side at its training size stays undilated;
        # equal ratios (square targets, or scaled aspect ratios) give the paper's one-number tables.
        per_axis = [_level_values(round(r, 4), num_levels) for r in (gh / th, gw / tw)]
        values = {}
        for level in range(1, num_levels):
            vh, vw = per_axis[0][level], per_axis[1][level]
            if max(vh, vw) > 1.0:
                values[level] = vh if vh == vw else (vh, vw)
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
            scalar = {g: d for g, d in main.items() if not isinstance(d, tuple)}
            if not scalar:
                raise ConfigError("disperse=True: every dilated layer has per-axis factors at this aspect ratio, "
                                  "and dispersion needs one factor per layer (its transform is for square kernels)")
            cfg["disperse"] = [g for g, d in scalar.items() if d >= 3] or list(scalar)
            cfg["disperse_tau"] = tau
        return cls.from_dict(cfg, **overrides)


def _level_values(s: float, num_levels: int) -> dict[int, float]:
    """The paper's per-level factor for one side ratio ``s`` (1 where that side needs none)."""
    deepest = num_levels - 1
    if s <= 1.0 + 1e-9:
        return {level: 1.0 for level in range(1, num_levels)}
    if s < 3:
        return {level: s for level in range(1, num_levels)}
    return {level: max(s - (deepest - level), 2.0) for level in range(1, num_levels)}


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


def progressive_factor(d, remaining: float):
    """The paper's decay: ``max(ceil(d * remaining), 2)``; ``remaining`` = (tau - i) / tau in (0, 1].

    A per-axis ``(dh, dw)`` decays axis by axis (an axis at 1 stays at 1)."""
    if isinstance(d, tuple):
        return tuple(progressive_factor(v, remaining) for v in d)
    if d <= 1:
        return 1.0
    return float(max(math.ceil(d * remaining - 1e-9), 2))
