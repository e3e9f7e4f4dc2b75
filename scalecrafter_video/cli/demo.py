"""``scalecrafter-video demo``: Direct-Inf vs ScaleCrafter on the embedded demo model, on a CPU."""

from __future__ import annotations

import argparse

from ..demo.showcase import DEFAULT_PROMPT, parse_size

_DESCRIPTION = ("The paper's failure and fix on the embedded demo model, on a CPU. Renders one prompt at 4x the demo "
                "model's training pixels (64x64 from 32x32) twice with the same seed, once as Direct-Inf (the model "
                "run unchanged at the larger size: the object repeats) and once with ScaleCrafter's re-dilation (one "
                "object), and writes both side by side, labelled with the number of objects found per frame, to "
                "outputs/demo.mp4 and outputs/demo.gif.")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="Direct-Inf vs ScaleCrafter on the embedded demo model (CPU, under a minute)",
        description=_DESCRIPTION,
    )
    p.add_argument("--prompt", default=DEFAULT_PROMPT,
                   help='"a {red|green|blue|yellow} {circle|square|triangle} moving {left|right|up|down}"')
    p.add_argument("--size", default="64x64", help="target HEIGHTxWIDTH in pixels (default 64x64 = 4x pixels)")
    p.add_argument("--seed", type=int, default=2,
                   help="noise seed (default 2: with the default prompt, Direct-Inf draws two circles)")
    p.add_argument("--steps", type=int, default=15, help="DDIM steps (default 15: with CFG and ndcfg the demo stays under 30 s on 2 CPU cores)")
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


def run(args: argparse.Namespace) -> int:
    from ..demo.showcase import run_showcase

    record = run_showcase(prompt=args.prompt, size=parse_size(args.size), seed=args.seed, steps=args.steps,
                          threads=args.threads, guidance=args.guidance, model=args.model, out=args.out,
                          display_scale=args.display_scale, gif=not args.no_gif)
    for name, s in record["metrics"].items():
        print(f"  {name:<13} objects/frame {s['objects_per_frame']:.2f}  one-object frames "
              f"{s['one_object_rate']:.0%}  colour ok {s['colour_accuracy']:.0%}")
    height, width = record["grid_size"]
    print(f"wrote {', '.join(record['written'])} ({record['frames']} frames, {width}x{height}) in {record['seconds']} s")
    return 0
