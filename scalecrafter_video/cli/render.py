"""``scalecrafter-video render``: batch jobs that resume and shard across torchrun ranks (see
:mod:`scalecrafter_video.batch`)."""

from __future__ import annotations

import argparse

from ..batch.plan import FORMATS
from ..config import METHODS
from ..errors import ScaleCrafterError
from .options import add_model_arguments, model_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="batch-render a prompt file (resumable; shards across torchrun ranks)",
        description="Render every (prompt, seed, method) of a prompt file into --out-dir with a manifest.jsonl. "
        "Re-running the same command resumes; under torchrun the items are sharded across ranks.",
    )
    p.add_argument("--prompts", required=True, help="text file (one prompt a line) or .jsonl (prompt, seed/seeds, height, width, frames)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--model", required=True, help="local diffusers folder, or an LVDM/VideoCrafter .ckpt")
    p.add_argument("--model-config", help="YAML config of a .ckpt model (LVDM / VideoCrafter)")
    p.add_argument("--clip", help="local CLIP text-encoder folder (LVDM)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", help="ScaleCrafter schedule YAML, or 'auto' (the default)")
    src.add_argument("--preset", help="a shipped schedule, e.g. sd2.1/2048x2048")
    p.add_argument("--method", help=f"comma list of methods, one output each ({', '.join(METHODS)}); default: the schedule's")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", help="comma list of seeds for every prompt, e.g. 0,1,2")
    seeds.add_argument("--num-per-prompt", type=int, help="K outputs per prompt, seeds 0..K-1 (default 1)")
    p.add_argument("--height", type=int, help="pixels (default: the model's native height)")
    p.add_argument("--width", type=int, help="pixels (default: the model's native width)")
    p.add_argument("--frames", type=int, help="frames per video (default: the model's)")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    p.add_argument("--eta", type=float, help="DDIM eta")
    p.add_argument("--fps", type=float, help="frames per second of written videos")
    p.add_argument("--format", choices=FORMATS, default="mp4", help="mp4 (default), png (a folder of frames), npz (lossless uint8)")
    p.add_argument("--chunk-size", type=int, default=8, help="frames per VAE decode call (default 8)")
    p.add_argument("--tile-size", type=int, default=None, help="latent tile size for synced-GroupNorm tiled decoding (default: off)")
    p.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK when available), cpu, cuda, ...")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument("--overwrite", action="store_true", help="re-render items finished with a different configuration")
    add_model_arguments(p)
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the UNet (one graph per phase of the schedule, none per step)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _parse_methods(text: str | None) -> list[str | None]:
    if not text:
        return [None]
    methods = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ScaleCrafterError(f"--method: unknown method(s) {', '.join(bad) or repr(text)}; choose from {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ScaleCrafterError(f"--method lists a method twice: {text}")
    return methods


def _parse_seeds(args) -> list[int]:
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ScaleCrafterError(f"--seeds must be a comma list of integers, got {args.seeds!r}") from None
        if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
            raise ScaleCrafterError(f"--seeds must be distinct non-negative integers, got {args.seeds!r}")
        return seeds
    k = 1 if args.num_per_prompt is None else args.num_per_prompt
    if k <= 0:
        raise ScaleCrafterError(f"--num-per-prompt must be positive, got {k}")
    return list(range(k))


def run(args: argparse.Namespace) -> int:
    from ..batch import BatchJob, run_batch

    job = BatchJob(
        prompts=args.prompts, out_dir=args.out_dir, model=args.model, methods=_parse_methods(args.method),
        seeds=_parse_seeds(args), config=args.config, preset=args.preset, model_config=args.model_config,
        clip=args.clip, height=args.height, width=args.width, frames=args.frames,
        negative_prompt=args.negative_prompt, steps=args.steps, guidance=args.guidance, eta=args.eta, fps=args.fps,
        format=args.format, chunk_size=args.chunk_size, tile_size=args.tile_size, device=args.device,
        dtype=args.dtype, overwrite=args.overwrite, image=args.image, motion_adapter=args.motion_adapter,
        options=model_options(args), progress=not args.no_progress, compile=args.compile,
    )
    return run_batch(job)
