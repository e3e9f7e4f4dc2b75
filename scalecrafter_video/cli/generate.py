"""``scalecrafter-video generate``: one video (or image) above the model's native resolution."""

from __future__ import annotations

import argparse

from ..config import METHODS
from .options import add_model_arguments, model_options


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser(
        "generate",
        help="generate a video (or image) above the model's native resolution",
        description="Generate with Direct-Inf, Attn-SF or ScaleCrafter from a local model.",
    )
    g.add_argument("--model", required=True, help="local diffusers folder, or an LVDM/VideoCrafter .ckpt")
    g.add_argument("--model-config", help="YAML config of a .ckpt model (LVDM / VideoCrafter)")
    g.add_argument("--clip", help="local tokenizer / CLIP text-encoder folder (LVDM, VideoCrafter)")
    g.add_argument("--prompt", required=True)
    g.add_argument("--negative-prompt", default=None)
    g.add_argument("--height", type=int, help="pixels (default: the model's native height)")
    g.add_argument("--width", type=int, help="pixels (default: the model's native width)")
    g.add_argument("--frames", type=int, help="number of frames (default: the model's)")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--config", help="ScaleCrafter schedule YAML, or 'auto' (the default)")
    src.add_argument("--preset", help="a shipped schedule, e.g. sd2.1/2048x2048 (see configs/)")
    g.add_argument("--method", choices=METHODS, help="override the schedule's method")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--steps", type=int, help="denoising steps (default: the model's, usually 50)")
    g.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    g.add_argument("--eta", type=float, help="DDIM eta")
    g.add_argument("--fps", type=float, help="frames per second of the written video")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    g.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    g.add_argument("--out", required=True, help=".mp4/.gif/.webp file, .png for one frame, else a folder of pngs")
    add_model_arguments(g)
    g.add_argument("--chunk-size", type=int, default=None,
                   help="frames per VAE decode call (SVD: decode_chunk_size; default: the model's)")
    g.add_argument("--tile-size", type=int, default=None,
                   help="latent tile size for synced-GroupNorm tiled decoding (text-to-video folders, SVD)")
    g.add_argument("--overwrite", action="store_true",
                   help="replace a previous output of this tool at --out (never anything else)")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the UNet (one graph per phase of the schedule, none per step; pays off on "
                        "GPUs over many steps)")
    g.add_argument("--compare", action="store_true", help="also render Direct-Inf, same seed, side by side")
    g.add_argument("--lr-guidance", type=float, metavar="STEP_FRACTION",
                   help="sample at the native size first, upsample, re-noise and re-run this fraction of the "
                        "steps at the target size with the schedule on (the paper's 'Ours + LR')")
    g.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..recipes import generate_video

    result = generate_video(
        model=args.model, prompt=args.prompt, out=args.out, device=args.device, dtype=args.dtype,
        model_config=args.model_config, clip=args.clip, motion_adapter=args.motion_adapter, image=args.image,
        config=args.config, preset=args.preset, method=args.method, overwrite=args.overwrite,
        negative_prompt=args.negative_prompt, height=args.height, width=args.width, frames=args.frames,
        seed=args.seed, steps=args.steps, guidance=args.guidance, eta=args.eta, fps=args.fps,
        options=model_options(args), chunk_size=args.chunk_size, tile_size=args.tile_size, compare=args.compare,
        lr_guidance=args.lr_guidance, compile=args.compile,
    )
    video = result.video
    print(f"wrote {result.path} ({video.shape[0]} frame(s), {video.shape[2]}x{video.shape[1]}) in "
          f"{result.record['seconds']} s")
    return 0
