"""Schedule search, the paper's method: per timestep bucket, the setting with the least noise-estimation error.

For each of ``buckets`` equal parts of an ``N``-step trajectory, reference clips at the target size
(real high-resolution videos, images for image models, or ground-truth scenes for the demo model)
are noised to timesteps of that part, ``x_t = sqrt(a) x_0 + sqrt(1 - a) eps``, and the model predicts
the noise under each candidate setting; the candidate with the least mean ``|eps_hat - eps|^2``
wins the bucket. Candidates come from the paper's automatic table for this size: the deepest ``k``
resolution levels of it, with every factor (per axis) scaled by a multiplier, and Direct-Inf.
The winners become a staged schedule (:attr:`ScaleCrafterConfig.stages`), neighbouring buckets with
the same winner merged, trailing Direct-Inf buckets left out.

The search is seeded (the noise of every clip and timestep comes from ``seed``) and resumable: every
measured ``(bucket, candidate)`` error is kept in a JSON state file, and a re-run with the same
settings skips what is there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import ScaleCrafterConfig
from ..errors import ConfigError, ScaleCrafterError

__all__ = ["Candidate", "TuneResult", "candidates_for", "load_references", "measured_table", "run_tune", "tune_schedule"]

DIRECT = "direct"


@dataclass(frozen=True)
class Candidate:
    """One setting: ``table`` is a dilation table (empty for Direct-Inf)."""

    name: str
    table: dict = field(default_factory=dict, hash=False, compare=False)


def _level(glob: str, num_levels: int) -> int:
    """Resolution level of an automatic-table glob (0 = outermost; the mid block is the deepest)."""
    head, index = glob.split(".")[0], glob.split(".")[1] if "." in glob else ""
    if head == "mid_block":
        return num_levels - 1
    if head == "down_blocks":
        return int(index)
    if head == "up_blocks":
        return num_levels - 1 - int(index)
    raise ConfigError(f"tune: cannot place {glob!r} on a resolution level")


def _scaled(factor, multiplier: float):
    axes = factor if isinstance(factor, tuple) else (factor, factor)
    h, w = (max(1.0, round(a * multiplier, 3)) for a in axes)
    return h if h == w else (h, w)


def candidates_for(auto: ScaleCrafterConfig, num_levels: int, multipliers=(0.75, 1.0, 1.25)) -> list[Candidate]:
    """Direct-Inf, then the deepest ``k`` levels of ``auto``'s table for ``k = 1 .. num_levels - 1``,
    each with its factors times every multiplier (clamped to >= 1 per axis; duplicates dropped)."""
    out, seen = [Candidate(DIRECT, {})], set()
    for k in range(1, num_levels):
        for m in multipliers:
            table = {glob: _scaled(f, m) for glob, f in auto.dilation.items()
                     if _level(glob, num_levels) >= num_levels - k}
            table = {g: f for g, f in table.items() if f != 1.0}
            key = json.dumps(sorted((g, f) for g, f in table.items()), default=list)
            if table and key not in seen:
                seen.add(key)
                out.append(Candidate(f"deepest{k}x{m:g}", table))
    return out


@dataclass
class TuneResult:
    """The staged schedule, and every measured error: ``errors[bucket][candidate] = mse``."""

    config: ScaleCrafterConfig
    errors: list[dict[str, float]]
    winners: list[str]


def load_references(source, height: int, width: int, frames: int, *, min_count: int = 4, seed: int = 0,
                    prompts=None) -> tuple[np.ndarray, list[str]]:
    """Reference clips at the target size, uint8 ``(n, frames, height, width, 3)``, and their prompts.

    ``source``: a folder of videos / frame folders / images, an ``.npy`` / ``.npz`` array, or
    ``scenes:N`` for N ground-truth scenes of the demo world rendered at the target size (with their
    own prompts). ``prompts``: one per clip, one for all, or None (unconditional). Clips must be
    exactly ``height x width`` (resizing would hide the detail the search is about) and hold at least
    ``frames`` frames (the first ``frames`` are used).
    """
    if isinstance(source, str) and source.startswith("scenes:"):
        from ..demo.scenes import render_batch, sample_scene, to_uint8

        try:
            count = int(source.split(":", 1)[1])
        except ValueError:
            raise ScaleCrafterError(f"--reference {source}: expected scenes:N with N a number of scenes") from None
        if count < min_count:
            raise ScaleCrafterError(f"--reference {source}: at least {min_count} clips are needed, got {count}")
        rng = np.random.default_rng(seed)
        scenes = [sample_scene(rng, frames, aspect=width / height) for _ in range(count)]
        return to_uint8(render_batch(scenes, height, width, frames)), [sc.prompt for sc in scenes]
    from ..metrics.inputs import VideoSet

    vset = VideoSet(source, label="--reference")
    if len(vset) < min_count:
        raise ScaleCrafterError(f"--reference {source}: {len(vset)} clip(s); at least {min_count} are needed "
                                "(--min-references lowers the bar)")
    clips = []
    for item in vset.items:
        clip = item.load(frames)
        if clip.shape[1:3] != (height, width):
            raise ScaleCrafterError(f"--reference {item.name}: {clip.shape[1]}x{clip.shape[2]} pixels, the target is "
                                    f"{height}x{width} (references must be at the target size)")
        if clip.shape[0] < frames:
            raise ScaleCrafterError(f"--reference {item.name}: {clip.shape[0]} frame(s), {frames} needed")
        clips.append(clip[:frames])
    if prompts is None:
        prompts = [""] * len(clips)
    elif isinstance(prompts, str):
        prompts = [prompts] * len(clips)
    elif len(prompts) != len(clips):
        raise ScaleCrafterError(f"--prompts: {len(prompts)} prompt(s) for {len(clips)} reference clip(s)")
    return np.stack(clips), list(prompts)


def _eps_from_prediction(pred, x_t, alpha_bar, prediction_type: str):
    """The noise implied by the model output (eps, v or sample prediction)."""
    a = alpha_bar
    if prediction_type == "epsilon":
        return pred
    if prediction_type == "v_prediction":
        return a.sqrt() * pred + (1 - a).sqrt() * x_t
    if prediction_type == "sample":
        return (x_t - a.sqrt() * pred) / (1 - a).sqrt()
    raise ConfigError(f"tune: unsupported prediction type {prediction_type!r}")


def _fingerprint(**settings) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tune_schedule(pipe, references: np.ndarray, prompts: list[str], *, buckets: int = 5, num_steps: int = 50,
                  timesteps_per_bucket: int = 2, multipliers=(0.75, 1.0, 1.25), seed: int = 0, batch_size: int = 4,
                  state_path=None, progress: bool = True, candidates: list[Candidate] | None = None) -> TuneResult:
    """Search the schedule for ``pipe`` at the size of ``references``.

    Args:
        pipe: a pipeline with ``unet``, ``scheduler`` (DDPM-style ``alphas_cumprod``), ``encode_prompt``
            and ``encode_frames`` (the text-to-video folders and the demo model).
        references: uint8 ``(n, f, H, W, 3)`` clips at the target size (``f = 1`` for images).
        prompts: one prompt per clip (``""`` for unconditional).
        buckets: equal parts of the ``num_steps``-step trajectory, each with its own winner.
        timesteps_per_bucket: timesteps measured per bucket (evenly spread inside it).
        state_path: JSON file of measured errors (resume); ``None`` keeps them in memory only.
        candidates: the settings to compare (default :func:`candidates_for` the automatic table).
    """
    from tqdm.auto import tqdm

    from ..engine import apply_scalecrafter, remove_scalecrafter, unet_levels
    from ..trajectory import denoising_step
    from .generate import config_for

    if not hasattr(pipe, "encode_frames") or not hasattr(pipe, "encode_prompt"):
        raise ScaleCrafterError(f"tune supports text-to-video folders (ModelScope, Zeroscope, the demo model); "
                                f"{type(pipe).__name__} has no way to encode reference clips yet")
    n, frames, height, width, _ = references.shape
    if len(prompts) != n:
        raise ScaleCrafterError(f"tune: {n} reference clip(s) but {len(prompts)} prompt(s)")
    if buckets < 1 or num_steps < buckets or timesteps_per_bucket < 1:
        raise ScaleCrafterError(f"tune: need 1 <= buckets ({buckets}) <= steps ({num_steps}) and at least one "
                                "timestep per bucket")
    pipe.check_size(height, width)
    levels = unet_levels(pipe.unet)
    auto = config_for(pipe, height, width)
    candidates = candidates or candidates_for(auto, levels, multipliers)
    scheduler = pipe.scheduler
    scheduler.set_timesteps(num_steps)
    alphas = scheduler.alphas_cumprod
    prediction_type = scheduler.config.prediction_type
    refs_digest = hashlib.sha256(np.ascontiguousarray(references).tobytes()).hexdigest()[:16]
    fingerprint = _fingerprint(refs=refs_digest, prompts=prompts, buckets=buckets, steps=num_steps,
                               per_bucket=timesteps_per_bucket, seed=seed, size=(height, width),
                               unet=type(pipe.unet).__name__, candidates=[(c.name, c.table) for c in candidates])
    state = {"fingerprint": fingerprint, "errors": {}}
    state_path = Path(state_path) if state_path is not None else None
    if state_path is not None and state_path.is_file():
        try:
            saved = json.loads(state_path.read_text())
        except (OSError, ValueError):
            saved = {}
        if saved.get("fingerprint") == fingerprint:
            state = saved

    x0 = pipe.encode_frames(references)  # (n, c, f, h, w) model space
    context = pipe.encode_prompt(list(prompts))
    bucket_steps = []
    for b in range(buckets):
        lo, hi = b * num_steps // buckets, (b + 1) * num_steps // buckets
        picks = np.linspace(lo, hi - 1, timesteps_per_bucket).round().astype(int)
        bucket_steps.append(sorted(set(int(i) for i in picks)))

    todo = [(b, c) for b in range(buckets) for c in candidates if f"{b}/{c.name}" not in state["errors"]]
    bar = tqdm(total=buckets * len(candidates), initial=buckets * len(candidates) - len(todo), desc="tune",
               unit="setting", disable=not progress)
    for b, cand in todo:
        config = auto.replace(method="scalecrafter" if cand.table else "direct", dilation=dict(cand.table),
                              dilate_tau=1.0, progressive=False, ndcfg_tau=0.0, ndcfg_dilation={}, stages=[],
                              disperse=[], disperse_tau=0.0)
        apply_scalecrafter(pipe.unet, config)
        total, count = 0.0, 0
        try:
            for i in bucket_steps[b]:
                t = scheduler.timesteps[i]
                a = alphas[int(t)].to(torch.float32)
                for start in range(0, n, batch_size):
                    clip = x0[start:start + batch_size].float().cpu()
                    gen = torch.Generator("cpu").manual_seed(seed * 1_000_003 + int(t) * 1009 + start)
                    eps = torch.randn(clip.shape, generator=gen, dtype=torch.float32)
                    x_t = a.sqrt() * clip + (1 - a).sqrt() * eps
                    with torch.no_grad(), denoising_step(i, num_steps, cfg=False):
                        pred = pipe.unet(x_t.to(pipe.device, pipe.dtype), t,
                                         encoder_hidden_states=context[start:start + batch_size]).sample
                    eps_hat = _eps_from_prediction(pred.float().cpu(), x_t, a, prediction_type)
                    total += float(((eps_hat - eps) ** 2).sum())
                    count += eps.numel()
        finally:
            remove_scalecrafter(pipe.unet)
        state["errors"][f"{b}/{cand.name}"] = total / count
        if state_path is not None:
            from ..atomic import write_json_atomic

            write_json_atomic(state_path, state)
        bar.update(1)
    bar.close()

    errors = [{c.name: state["errors"][f"{b}/{c.name}"] for c in candidates} for b in range(buckets)]
    winners = [min(e, key=lambda name: (e[name], name != DIRECT)) for e in errors]
    return TuneResult(_staged(auto, candidates, winners, buckets), errors, winners)


def _staged(auto: ScaleCrafterConfig, candidates: list[Candidate], winners: list[str],
            buckets: int) -> ScaleCrafterConfig:
    """The winners as stages (neighbours with the same winner merged, trailing Direct-Inf dropped)."""
    tables = {c.name: c.table for c in candidates}
    stages = []
    for b, name in enumerate(winners):
        until = round((b + 1) / buckets, 6)
        if stages and stages[-1][0] == name:
            stages[-1] = (name, until)
        else:
            stages.append((name, until))
    while stages and stages[-1][0] == DIRECT:
        stages.pop()
    name = f"tuned-{auto.target_size[0]}x{auto.target_size[1]}-from-{auto.train_size[0]}x{auto.train_size[1]}"
    if not stages:
        return auto.replace(method="direct", name=name, stages=[], dilation={})
    return auto.replace(
        dilation={}, progressive=False, name=name,
        stages=[{"until": until, "dilation": dict(tables[winner])} for winner, until in stages],
    )


def measured_table(result: TuneResult) -> str:
    """The errors as a small text table (buckets as rows, candidates as columns, winners marked)."""
    names = list(result.errors[0])
    width = max(max(len(n) for n in names), 11) + 2
    lines = ["bucket  " + "".join(f"{n:>{width}}" for n in names)]
    for b, row in enumerate(result.errors):
        cells = "".join(f"{('*' if n == result.winners[b] else '') + f'{row[n]:.4e}':>{width}}" for n in names)
        lines.append(f"{b:>6}  {cells}")
    return "\n".join(lines)


@dataclass
class TuneRun:
    """What :func:`run_tune` wrote: the YAML path, the measured table and a one-line summary."""

    path: Path
    result: TuneResult
    table: str
    summary: str


def _multipliers(value) -> tuple[float, ...]:
    if isinstance(value, str):
        try:
            value = [float(v) for v in value.split(",") if v.strip()]
        except ValueError:
            raise ScaleCrafterError(f"--multipliers must be a comma list of numbers, got {value!r}") from None
    values = tuple(float(v) for v in value)
    if not values or any(not v > 0 for v in values):
        raise ScaleCrafterError(f"--multipliers must be positive numbers, got {value!r}")
    return values


def run_tune(*, model, height: int, width: int, reference, out, prompts_file=None, prompt: str | None = None,
             frames: int | None = None, buckets: int = 5, steps: int = 50, timesteps_per_bucket: int = 2,
             multipliers="0.75,1,1.25", min_references: int = 4, batch_size: int = 4, seed: int = 0, state=None,
             overwrite: bool = False, device: str = "auto", dtype: str = "auto", progress: bool = True) -> TuneRun:
    """``scalecrafter-video tune``: check everything, load the model, search, write the staged YAML."""
    from ..atomic import write_text_atomic
    from ..pipelines import load_pipeline
    from ..runtime import resolve_device, resolve_dtype
    from .inputs import check_sampling_numbers

    check_sampling_numbers(height=height, width=width, frames=frames, steps=steps, seed=seed)
    for flag, value in (("--buckets", buckets), ("--timesteps-per-bucket", timesteps_per_bucket),
                        ("--min-references", min_references), ("--batch-size", batch_size)):
        if value < 1:
            raise ScaleCrafterError(f"{flag} must be a positive integer, got {value}")
    if buckets > steps:
        raise ScaleCrafterError(f"--buckets {buckets} is more than --steps {steps}")
    mults = _multipliers(multipliers)
    out = Path(out)
    if out.suffix.lower() not in (".yaml", ".yml"):
        raise ScaleCrafterError(f"--out must end in .yaml, got {out.name!r}")
    if out.exists() and not overwrite:
        raise ScaleCrafterError(f"--out {out} already exists (pass --overwrite to replace it)")
    if out.exists() and not out.is_file():
        raise ScaleCrafterError(f"--out {out} is not a file; refusing to replace it")
    if not out.parent.is_dir():
        raise ScaleCrafterError(f"--out: the folder {out.parent} does not exist")
    prompts = prompt
    if prompts_file is not None:
        try:
            prompts = [line.strip() for line in Path(prompts_file).read_text(encoding="utf-8").splitlines()
                       if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise ScaleCrafterError(f"--prompts {prompts_file}: cannot read it ({exc})") from None
    dev = resolve_device(device)
    pipe = load_pipeline(model, device=dev, dtype=resolve_dtype(dtype, dev))
    frames = pipe.defaults.get("num_frames", 1) if frames is None else frames
    clips, clip_prompts = load_references(reference, height, width, frames, min_count=min_references, seed=seed,
                                          prompts=prompts)
    result = tune_schedule(pipe, clips, clip_prompts, buckets=buckets, num_steps=steps,
                           timesteps_per_bucket=timesteps_per_bucket, multipliers=mults, seed=seed,
                           batch_size=batch_size, state_path=state or Path(str(out) + ".tune.json"), progress=progress)
    header = (f"# tuned by scalecrafter-video tune: {len(clips)} reference clip(s) from {reference}, "
              f"{buckets} bucket(s) of a {steps}-step trajectory, seed {seed}\n"
              f"# winners per bucket: {', '.join(result.winners)}\n")
    write_text_atomic(out, header + result.config.to_yaml())
    stages = len(result.config.stages)
    summary = f"{stages} stage(s)" if stages else "Direct-Inf won every bucket: method direct"
    return TuneRun(out, result, measured_table(result), summary)
