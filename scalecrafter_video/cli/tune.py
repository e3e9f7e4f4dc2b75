"""``scalecrafter-video tune``: search a staged schedule by noise-estimation error (the paper's method)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="search the schedule with the least noise-estimation error per timestep bucket",
        description="Noise reference clips at the target size to timesteps of each bucket of the trajectory, "
        "measure the model's noise-estimation error under each candidate setting (which levels of the automatic "
        "table, which factor, per axis) and write the best per bucket as a staged schedule YAML.",
    )
    p.add_argument("--model", required=True, help="local text-to-video folder (the demo model: models/shapes-t2v)")
    p.add_argument("--height", type=int, required=True, help="target height in pixels")
    p.add_argument("--width", type=int, required=True, help="target width in pixels")
    p.add_argument("--reference", required=True,
                   help="clips at the target size: a folder of videos / frame folders / images, an .npy/.npz "
                        "array, or scenes:N (N ground-truth scenes of the demo world)")
    p.add_argument("--out", required=True, help="schedule YAML to write")
    prompts = p.add_mutually_exclusive_group()
    prompts.add_argument("--prompts", help="text file: one prompt per reference clip, in order")
    prompts.add_argument("--prompt", help="one prompt for every clip (default: unconditional)")
    p.add_argument("--frames", type=int, help="frames per clip (default: the model's)")
    p.add_argument("--buckets", type=int, default=5, help="parts of the trajectory, each with its own winner (5)")
    p.add_argument("--steps", type=int, default=50, help="trajectory length the buckets divide (50)")
    p.add_argument("--timesteps-per-bucket", type=int, default=2, help="timesteps measured per bucket (2)")
    p.add_argument("--multipliers", default="0.75,1,1.25", help="factor multipliers of the candidates (0.75,1,1.25)")
    p.add_argument("--min-references", type=int, default=4, help="fewest reference clips accepted (4)")
    p.add_argument("--batch-size", type=int, default=4, help="clips per UNet call (4)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (and the scenes' seed)")
    p.add_argument("--state", help="resume file of measured errors (default: OUT.tune.json)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..recipes.tune import run_tune

    result = run_tune(
        model=args.model, height=args.height, width=args.width, reference=args.reference, out=args.out,
        prompts_file=args.prompts, prompt=args.prompt, frames=args.frames, buckets=args.buckets, steps=args.steps,
        timesteps_per_bucket=args.timesteps_per_bucket, multipliers=args.multipliers,
        min_references=args.min_references, batch_size=args.batch_size, seed=args.seed, state=args.state,
        overwrite=args.overwrite, device=args.device, dtype=args.dtype, progress=not args.no_progress,
    )
    print(result.table)
    print(f"wrote {result.path} ({result.summary})")
    return 0
