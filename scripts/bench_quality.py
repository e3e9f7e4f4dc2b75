#!/usr/bin/env python
"""Ground-truth quality benchmark on the embedded demo model (or another shapes model).

For every target size and method, N videos are generated with fixed seeds and fixed prompts (the
same seeds and prompts for every method) and scored with the ground-truth metrics of
:mod:`scalecrafter_video.metrics.ground_truth`; ground truth rendered at the target size is scored
too, as the ceiling of each metric. Writes a markdown table and a JSON file (results, the exact
ScaleCrafter config of every cell, seeds, timings). Each finished cell is cached under
``<out>.cells/``, so an interrupted run resumes where it stopped.

Methods (cumulative from "ScaleCrafter"):
  direct        Direct-Inf: the model run unchanged at the target size
  attn-sf       attention entropy scaling only (Jin et al. 2023)
  bicubic       native size (training pixel count, target aspect) + bicubic upscale
  scalecrafter  re-dilation (automatic layer-wise schedule)
  ndcfg         + noise-damped CFG (needs guidance > 1 to have any effect)
  disperse      + dispersed convolution
  lr            + low-resolution guidance (re-noise the upsampled native sample, finish with ndcfg config)

    python scripts/bench_quality.py --videos 64                   # full grid
    python scripts/bench_quality.py --videos 8 --sizes 64x64      # a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scalecrafter_video import ScaleCrafterConfig, apply_scalecrafter, remove_scalecrafter  # noqa: E402
from scalecrafter_video.data.scenes import (  # noqa: E402
    COLOURS,
    DIRECTIONS,
    SHAPES,
    render_scene,
    scene_from_prompt,
    to_uint8,
)
from scalecrafter_video.demo import load_demo_pipeline  # noqa: E402
from scalecrafter_video.metrics.ground_truth import evaluate_video, summarize  # noqa: E402
from scalecrafter_video.patching import unet_levels  # noqa: E402
from scalecrafter_video.pipelines.lr_guidance import (  # noqa: E402
    generate_native_upscaled,
    generate_with_lr_guidance,
)

METHODS = {
    "direct": "Direct-Inf",
    "attn-sf": "Attn-SF",
    "bicubic": "native + bicubic",
    "scalecrafter": "ScaleCrafter (re-dilation)",
    "ndcfg": "+ ndcfg",
    "disperse": "+ dispersion",
    "lr": "+ LR guidance",
}
METRICS = [
    ("one_object_rate", "one-object frames", "%", True),
    ("objects_per_frame", "objects/frame", "", None),
    ("scale_error", "scale err", "", False),
    ("colour_accuracy", "colour acc", "%", True),
    ("colour_error", "colour err", "", False),
    ("temporal_stability", "temporal stab.", "%", True),
    ("direction_accuracy", "direction acc", "%", True),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", help="model folder (default: the embedded models/shapes-t2v)")
    p.add_argument("--videos", type=int, default=64, help="videos per cell (default 64)")
    p.add_argument("--sizes", default="32x32,64x64,128x128,32x96", help="HxW list (default: 1x, 4x, 16x, 3:1)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    p.add_argument("--steps", type=int, help="DDIM steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="CFG scale (default: the model's)")
    p.add_argument("--lr-fraction", type=float, default=0.5, help="LR guidance: fraction of steps re-run (default 0.5)")
    p.add_argument("--batch", type=int, default=8, help="videos per model call")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--out", default="outputs/bench_quality", help="output stem (.md and .json are added)")
    return p.parse_args(argv)


def parse_sizes(text):
    out = []
    for item in text.split(","):
        h, w = (int(v) for v in item.lower().split("x"))
        out.append((h, w))
    return out


def prompts_for(n: int, seed: int) -> list[str]:
    """A fixed, balanced prompt list: the 48 combinations in a seeded order, repeated."""
    combos = [f"a {c} {s} moving {d}" for c in COLOURS for s in SHAPES for d in DIRECTIONS]
    order = np.random.default_rng(seed).permutation(len(combos))
    return [combos[order[i % len(combos)]] for i in range(n)]


def configs_for(method, pipe, size, levels):
    """The ScaleCrafter config of a method at a size (None for the bicubic baseline)."""
    auto = lambda **kw: ScaleCrafterConfig.auto(pipe.train_size, size, num_levels=levels, vae_scale_factor=1, **kw)  # noqa: E731
    return {
        "direct": auto(method="direct"),
        "attn-sf": auto(method="attn-sf"),
        "bicubic": None,
        "scalecrafter": auto(ndcfg=False),
        "ndcfg": auto(ndcfg=True),
        "disperse": auto(ndcfg=True, disperse=True),
        "lr": auto(ndcfg=True),
    }[method]


def generate(method, pipe, config, prompts, size, seed, call, lr_fraction):
    generator = torch.Generator("cpu").manual_seed(seed)
    h, w = size
    if method == "bicubic":
        return generate_native_upscaled(pipe, prompts, h, w, generator=generator, progress=False, **call)
    if method == "lr":
        return generate_with_lr_guidance(pipe, prompts, h, w, config, lr_fraction, generator=generator,
                                         progress=False, **call)
    apply_scalecrafter(pipe, config)
    try:
        return pipe(prompts, height=h, width=w, generator=generator, progress=False, **call)
    finally:
        remove_scalecrafter(pipe)


def fmt(value, unit):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{100 * value:.1f}%" if unit == "%" else f"{value:.3f}"


def write_outputs(stem: Path, results: dict, meta: dict) -> None:
    lines = ["# Ground-truth quality benchmark", ""]
    lines.append(
        f"Model `{meta['model']}` (trained at {meta['train_size'][0]}x{meta['train_size'][1]}), "
        f"{meta['videos']} videos per cell, {meta['frames']} frames, DDIM {meta['steps']} steps, "
        f"guidance {meta['guidance']}, seeds {meta['seed']}+batch, same prompts and seeds for every method. "
        f"LR guidance re-runs the last {meta['lr_fraction']:.0%} of the steps. "
        "Higher is better for %, lower for errors; `ground truth` = the same prompts rendered at the target size."
    )
    lines.append("")
    header = "| size | method | " + " | ".join(m[1] for m in METRICS) + " | s/video |"
    lines += [header, "|" + "---|" * (len(METRICS) + 3)]
    for size_key, cells in results.items():
        for method, cell in cells.items():
            s = cell["summary"]
            row = [size_key, METHODS.get(method, method)]
            row += [fmt(s.get(k), unit) for k, _, unit, _ in METRICS]
            row.append(f"{cell.get('seconds_per_video', 0):.2f}" if method != "ground truth" else "-")
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Configs (per size and method) are in the JSON file next to this table.", ""]
    stem.with_suffix(".md").write_text("\n".join(lines))
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        sys.exit(f"error: unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}")
    sizes = parse_sizes(args.sizes)
    pipe = load_demo_pipeline(args.model)
    levels = unet_levels(pipe.unet)
    steps = args.steps or pipe.defaults["num_inference_steps"]
    guidance = pipe.defaults["guidance_scale"] if args.guidance is None else args.guidance
    frames = pipe.defaults["num_frames"]
    call = dict(num_inference_steps=steps, guidance_scale=guidance, num_frames=frames)
    prompts = prompts_for(args.videos, args.seed)
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    cache = Path(str(stem) + ".cells")
    cache.mkdir(exist_ok=True)
    meta = dict(model=str(args.model or "models/shapes-t2v"), train_size=list(pipe.train_size), videos=args.videos,
                frames=frames, steps=steps, guidance=guidance, seed=args.seed, lr_fraction=args.lr_fraction,
                batch=args.batch, threads=torch.get_num_threads(), prompts=prompts)
    results: dict = {}
    total = len(sizes) * len(methods)
    bar = tqdm(total=total * args.videos, desc="bench", unit="video", dynamic_ncols=True)
    for size in sizes:
        size_key = f"{size[0]}x{size[1]}"
        results[size_key] = {}
        # ground truth: the same prompts rendered at the target size
        rng = np.random.default_rng(args.seed)
        gt = [evaluate_video(to_uint8(render_scene(scene_from_prompt(p, rng, frames, size[1] / size[0]), *size, frames)),
                             prompt=p) for p in prompts]
        results[size_key]["ground truth"] = {"summary": summarize(gt), "config": None}
        for method in methods:
            config = configs_for(method, pipe, size, levels)
            key = f"{size_key}-{method}-n{args.videos}-s{steps}-g{guidance}-seed{args.seed}"
            if method == "lr":
                key += f"-lr{args.lr_fraction}"
            cell_file = cache / f"{key}.json"
            if cell_file.is_file():
                results[size_key][method] = json.loads(cell_file.read_text())
                bar.update(args.videos)
                continue
            started = time.perf_counter()
            per_video = []
            for b0 in range(0, args.videos, args.batch):
                batch_prompts = prompts[b0 : b0 + args.batch]
                videos = generate(method, pipe, config, batch_prompts, size, args.seed + b0, call, args.lr_fraction)
                for p, v in zip(batch_prompts, videos):
                    per_video.append(evaluate_video(v, prompt=p))
                bar.update(len(batch_prompts))
                bar.set_postfix(size=size_key, method=method)
            seconds = time.perf_counter() - started
            cell = {"summary": summarize(per_video), "config": config.to_dict() if config else None,
                    "seconds_per_video": seconds / args.videos, "per_video": per_video}
            cell_file.write_text(json.dumps(cell) + "\n")
            results[size_key][method] = cell
            write_outputs(stem, results, meta)
    bar.close()
    write_outputs(stem, results, meta)
    print(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
