"""``scalecrafter-video demo``: the paper's failure and fix on the embedded demo model, on a CPU.

Renders one prompt at 4x the demo model's training pixels (64x64 from 32x32) twice with the same
seed, once as Direct-Inf (the model run unchanged at the larger size: the object repeats) and once
with ScaleCrafter's re-dilation (one object), and writes both side by side, labelled with the
number of objects found per frame, to ``outputs/demo.mp4`` and ``outputs/demo.gif``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import ModelLoadError, ScaleCrafterError

DEFAULT_PROMPT = "a red circle moving right"


def parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ScaleCrafterError(f"--size must look like 64x64 (HEIGHTxWIDTH), got {text!r}") from None
    if h <= 0 or w <= 0:
        raise ScaleCrafterError(f"--size must be positive, got {text!r}")
    return h, w


def load_demo_pipeline(model=None):
    """The embedded model through the generic loader (the same path a real local model takes)."""
    from ..pipelines import load_pipeline
    from .model import DEMO_MODEL_DIR

    path = Path(model) if model else DEMO_MODEL_DIR
    if not (path / "model_index.json").is_file():
        raise ModelLoadError(
            f"demo model not found at {path}; retrain it with `python scripts/train_demo_model.py`"
        )
    return load_pipeline(path, device="cpu")


def magnify(video: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour magnification of ``(f, h, w, 3)`` by an integer factor."""
    return video if k == 1 else video.repeat(k, axis=1).repeat(k, axis=2)


def run_showcase(*, prompt: str = DEFAULT_PROMPT, size: tuple[int, int] = (64, 64), seed: int = 2, steps: int = 15,
                 threads: int = 1, guidance: float | None = None, model=None, out="outputs/demo.mp4",
                 display_scale: int = 4, gif: bool = True) -> dict:
    """Render ``prompt`` at ``size`` with Direct-Inf and ScaleCrafter (same seed), write them side by
    side to ``out`` (and a ``.gif`` beside it unless ``gif`` is False) with a sidecar; returns the
    sidecar record. The demo's outputs are its own: a re-run replaces them, and only them."""
    from ..config import ScaleCrafterConfig
    from ..engine import unet_levels
    from ..export import check_output_path, side_by_side, write_json, write_video
    from ..metrics.ground_truth import evaluate_video
    from ..recipes import sample_video
    from ..recipes.inputs import check_sampling_numbers
    from ..recipes.sidecar import run_record
    from .scenes import canonical_prompt

    started = time.perf_counter()
    prompt = canonical_prompt(prompt)  # unknown words -> PromptError with the grammar
    height, width = size
    check_sampling_numbers(steps=steps, guidance=guidance, seed=seed)
    if display_scale < 1:
        raise ScaleCrafterError(f"--display-scale must be >= 1, got {display_scale}")
    out = Path(out)
    if out.suffix.lower() not in (".mp4", ".gif", ".webp"):
        raise ScaleCrafterError(f"--out must end in .mp4, .gif or .webp, got {out.name!r}")
    targets = [out, Path(str(out) + ".json")] + ([out.with_suffix(".gif")] if gif else [])
    for target in targets:  # checked before the model loads
        check_output_path(target, overwrite=True)
    if threads < 1:
        raise ScaleCrafterError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
    pipe = load_demo_pipeline(model)
    pipe.check_size(height, width)
    levels = unet_levels(pipe.unet)
    multiple = 2 ** (levels - 1)
    if height % multiple or width % multiple:
        raise ScaleCrafterError(f"--size sides must be multiples of {multiple} for this UNet, got {height}x{width}")
    call = dict(height=height, width=width, num_inference_steps=steps, guidance_scale=guidance, progress=True)
    effective = pipe.defaults.get("guidance_scale", 1.0) if guidance is None else guidance
    # demo model v2 samples with CFG, so the demo shows noise-damped CFG with re-dilation
    scalecrafter = ScaleCrafterConfig.auto(pipe.train_size, (height, width), num_levels=levels, vae_scale_factor=1,
                                           ndcfg=effective > 1)
    direct = scalecrafter.replace(method="direct")
    videos, labels, stats = [], [], {}
    for name, config in (("Direct-Inf", direct), ("ScaleCrafter", scalecrafter)):
        print(f"{name}: {prompt!r} at {height}x{width}, seed {seed}")
        video = sample_video(pipe, config, prompt, seed, **call)
        m = evaluate_video(video, prompt=prompt)
        stats[name] = {k: round(v, 3) for k, v in m.items() if isinstance(v, float)}
        videos.append(magnify(video, display_scale))
        labels.append(f"{name}: {m['objects_per_frame']:.1f} obj")
    panel_h = videos[0].shape[1]
    grid = side_by_side(videos, labels=labels, label_height=20 + panel_h % 2)  # even total height (H.264)
    fps = pipe.defaults.get("fps", 8)
    written = [write_video(grid, out, fps=fps, overwrite=True)]
    if gif and out.suffix.lower() != ".gif":
        written.append(write_video(grid, out.with_suffix(".gif"), fps=fps, overwrite=True))
    record = run_record(
        prompt=prompt, seed=seed, model=model or "embedded demo model", family="demo", height=height, width=width,
        frames=int(grid.shape[0]), fps=fps, steps=steps,
        guidance=pipe.defaults.get("guidance_scale") if guidance is None else guidance,
        eta=pipe.defaults.get("eta"), dtype="torch.float32", device="cpu", config=scalecrafter.to_dict(),
        seconds=round(time.perf_counter() - started, 1), size=[height, width], train_size=list(pipe.train_size),
        display_scale=display_scale, metrics=stats,
        configs={"Direct-Inf": direct.to_dict(), "ScaleCrafter": scalecrafter.to_dict()},
        written=[str(p) for p in written], grid_size=[int(grid.shape[1]), int(grid.shape[2])],
    )
    write_json(Path(str(out) + ".json"), record, overwrite=True)
    return record
