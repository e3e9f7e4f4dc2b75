#!/usr/bin/env python
"""At a wide target, which levels of the per-axis schedule remove the repeats, and which stretch the object?

At 32x96 the automatic per-axis schedule (``[1, 3]`` at the two deepest levels, ``[1, 2]`` at the
next) draws one object in every frame but stretches it sideways (``bench_quality_demo_v2.md``).
This samples the benchmark's first prompts and seeds with the automatic schedule cut down to fewer
levels and prints the ground-truth metrics of each: objects per frame against scale error and
shape accuracy shows where the repeats are settled and where the stretch comes from.

    python scripts/probe_aspect_schedules.py --size 32x96 --videos 16
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_quality import configs_for, generate, parse_sizes, prompts_for  # noqa: E402
from scalecrafter_video.demo.showcase import load_demo_pipeline  # noqa: E402
from scalecrafter_video.engine import unet_levels  # noqa: E402
from scalecrafter_video.errors import run_script  # noqa: E402
from scalecrafter_video.metrics.ground_truth import evaluate_video, summarize  # noqa: E402

COLUMNS = [("objects_per_frame", "objects/frame", ""), ("one_object_rate", "one object", "%"),
           ("scale_error", "scale err", ""), ("shape_accuracy", "shape", "%"), ("colour_accuracy", "colour", "%"),
           ("travel", "travel", "")]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="demo model folder (default: the embedded one)")
    p.add_argument("--size", default="32x96", help="HxW target (default 32x96)")
    p.add_argument("--videos", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=1234, help="the benchmark's seed: the same prompts and noises")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        (size,) = parse_sizes(args.size)
    except ValueError:
        p.error(f"--size must look like 32x96 (HEIGHTxWIDTH), got {args.size!r}")
    pipe = load_demo_pipeline(args.model)
    auto = configs_for("scalecrafter", pipe, size, unet_levels(pipe.unet))
    deepest = ("down_blocks.2", "mid_block", "up_blocks.0")
    variants = {
        "Direct-Inf": configs_for("direct", pipe, size, unet_levels(pipe.unet)),
        "automatic (all levels)": auto,
        "deepest level only": auto.replace(dilation={g: f for g, f in auto.dilation.items() if g.startswith(deepest)}),
        "mid block only": auto.replace(dilation={g: f for g, f in auto.dilation.items() if g.startswith("mid_block")}),
    }
    prompts = prompts_for(args.videos, args.seed)
    call = dict(num_inference_steps=args.steps, guidance_scale=pipe.defaults["guidance_scale"], num_frames=8)
    print(f"{size[0]}x{size[1]}, {args.videos} videos, DDIM {args.steps} steps, guidance {call['guidance_scale']}")
    print("| schedule | dilation | " + " | ".join(c[1] for c in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for name, config in variants.items():
        scores = []
        for b0 in range(0, args.videos, 8):
            batch = prompts[b0 : b0 + 8]
            out = generate("scalecrafter", pipe, config, batch, size, args.seed + b0, call, 0.5)
            scores += [evaluate_video(v, prompt=q) for v, q in zip(out, batch)]
        s = summarize(scores)
        cells = [f"{100 * s[k]:.1f}%" if unit == "%" else f"{s[k]:.3f}" for k, _, unit in COLUMNS]
        print(f"| {name} | {config.dilation or '-'} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    run_script(main)
