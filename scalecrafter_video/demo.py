"""``scalecrafter-video demo``: the paper's failure and fix on the embedded demo model, on a CPU.

Renders one prompt at 4x the demo model's training pixels (64x64 from 32x32) twice with the same
seed, once as Direct-Inf (the model run unchanged at the larger size: the object repeats) and once
with ScaleCrafter's re-dilation (one object), and writes both side by side, labelled with the
number of objects found per frame, to ``outputs/demo.mp4`` and ``outputs/demo.gif``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from .errors import ModelLoadError, ScaleCrafterError

DEFAULT_PROMPT = "a red circle moving right"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="Direct-Inf vs ScaleCrafter on the embedded demo model (CPU, under a minute)",
        description=__doc__.split("\n\n")[0] + " " + " ".join(__doc__.split("\n\n")[1].split()),
    )
    p.add_argument("--prompt", default=DEFAULT_PROMPT,
                   help='"a {red|green|blue|yellow} {circle|square|triangle} moving {left|right|up|down}"')
    p.add_argument("--size", default="64x64", help="target HEIGHTxWIDTH in pixels (default 64x64 = 4x pixels)")
    p.add_argument("--seed", type=int, default=2,
                   help="noise seed (default 2: with the default prompt, Direct-Inf draws two circles)")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (default 20)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a busy machine more threads oversubscribe the cores "
                        "and run several times slower)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (default: the model's)")
    p.add_argument("--model", help="model folder (default: the embedded models/shapes-t2v)")
    p.add_argument("--out", default="outputs/demo.mp4", help="video path; a .gif is written next to it")
    p.add_argument("--display-scale", type=int, default=4,
                   help="nearest-neighbour magnification of the written video (default 4; 1 = raw pixels)")
    p.add_argument("--no-gif", action="store_true", help="write only the video given by --out")
    p.set_defaults(func=run)


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
    from .demo_model import DEMO_MODEL_DIR
    from .pipelines import load_pipeline

    path = Path(model) if model else DEMO_MODEL_DIR
    if not (path / "model_index.json").is_file():
        raise ModelLoadError(
            f"demo model not found at {path}; retrain it with `python scripts/train_demo_model.py`"
        )
    return load_pipeline(path, device="cpu")


def magnify(video: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour magnification of ``(f, h, w, 3)`` by an integer factor."""
    return video if k == 1 else video.repeat(k, axis=1).repeat(k, axis=2)


def run(args: argparse.Namespace) -> int:
    from .commands import render
    from .config import ScaleCrafterConfig
    from .data.scenes import canonical_prompt
    from .export import check_output_path, side_by_side, write_json, write_video
    from .model_inputs import check_sampling_numbers
    from .metrics.ground_truth import evaluate_video
    from .engine import unet_levels

    started = time.perf_counter()
    prompt = canonical_prompt(args.prompt)  # unknown words -> PromptError with the grammar
    height, width = parse_size(args.size)
    check_sampling_numbers(steps=args.steps, guidance=args.guidance, seed=args.seed)
    if args.display_scale < 1:
        raise ScaleCrafterError(f"--display-scale must be >= 1, got {args.display_scale}")
    out = Path(args.out)
    if out.suffix.lower() not in (".mp4", ".gif", ".webp"):
        raise ScaleCrafterError(f"--out must end in .mp4, .gif or .webp, got {out.name!r}")
    targets = [out, Path(str(out) + ".json")] + ([out.with_suffix(".gif")] if not args.no_gif else [])
    for target in targets:  # checked before the model loads
        check_output_path(target, overwrite=True)
    if args.threads < 1:
        raise ScaleCrafterError(f"--threads must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    pipe = load_demo_pipeline(args.model)
    pipe.check_size(height, width)
    levels = unet_levels(pipe.unet)
    multiple = 2 ** (levels - 1)
    if height % multiple or width % multiple:
        raise ScaleCrafterError(f"--size sides must be multiples of {multiple} for this UNet, got {height}x{width}")
    call = dict(height=height, width=width, num_inference_steps=args.steps, guidance_scale=args.guidance,
                progress=True)
    scalecrafter = ScaleCrafterConfig.auto(pipe.train_size, (height, width), num_levels=levels, vae_scale_factor=1)
    direct = scalecrafter.replace(method="direct")
    videos, labels, stats = [], [], {}
    for name, config in (("Direct-Inf", direct), ("ScaleCrafter", scalecrafter)):
        print(f"{name}: {prompt!r} at {height}x{width}, seed {args.seed}")
        video = render(pipe, config, prompt, args.seed, **call)
        m = evaluate_video(video, prompt=prompt)
        stats[name] = {k: round(v, 3) for k, v in m.items() if isinstance(v, float)}
        videos.append(magnify(video, args.display_scale))
        labels.append(f"{name}: {m['objects_per_frame']:.1f} obj")
    panel_h = videos[0].shape[1]
    grid = side_by_side(videos, labels=labels, label_height=20 + panel_h % 2)  # even total height (H.264)
    fps = pipe.defaults.get("fps", 8)
    # The demo's outputs are its own: a re-run replaces them, and only them (foreign files are refused).
    written = [write_video(grid, out, fps=fps, overwrite=True)]
    if not args.no_gif and out.suffix.lower() != ".gif":
        written.append(write_video(grid, out.with_suffix(".gif"), fps=fps, overwrite=True))
    seconds = round(time.perf_counter() - started, 1)
    sidecar = {
        "prompt": prompt, "seed": args.seed, "size": [height, width], "train_size": list(pipe.train_size),
        "frames": int(grid.shape[0]), "display_scale": args.display_scale, "seconds": seconds,
        "metrics": stats, "configs": {"Direct-Inf": direct.to_dict(), "ScaleCrafter": scalecrafter.to_dict()},
    }
    write_json(Path(str(out) + ".json"), sidecar, overwrite=True)
    for name, s in stats.items():
        print(f"  {name:<13} objects/frame {s['objects_per_frame']:.2f}  one-object frames "
              f"{s['one_object_rate']:.0%}  colour ok {s['colour_accuracy']:.0%}")
    print(f"wrote {', '.join(str(p) for p in written)} ({grid.shape[0]} frames, {grid.shape[2]}x{grid.shape[1]}) "
          f"in {seconds} s")
    return 0
