"""Core subcommands: ``generate`` and ``env``."""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from .config import METHODS, ScaleCrafterConfig
from .errors import ScaleCrafterError


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
    g.add_argument("--compare", action="store_true", help="also render Direct-Inf, same seed, side by side")
    g.add_argument("--lr-guidance", type=float, metavar="STEP_FRACTION",
                   help="sample at the native size first, upsample, re-noise and re-run this fraction of the "
                        "steps at the target size with the schedule on (the paper's 'Ours + LR')")
    g.set_defaults(func=run_generate)

    e = sub.add_parser("env", help="print versions for bug reports")
    e.set_defaults(func=run_env)


def add_model_arguments(parser) -> None:
    """Flags of the model families (shared by generate and render)."""
    parser.add_argument("--image", help="first frame (png/jpg) for image-to-video models (SVD, I2VGen-XL)")
    parser.add_argument("--motion-adapter", help="AnimateDiff: a local MotionAdapter folder, with --model a Stable "
                                                 "Diffusion (XL) folder")
    parser.add_argument("--motion-bucket-id", type=int, help="SVD: amount of motion (default 127)")
    parser.add_argument("--cond-fps", type=int, help="SVD / I2VGen-XL: the fps the model is conditioned on")
    parser.add_argument("--noise-aug-strength", type=float, help="SVD: noise added to the conditioning image (0.02)")
    parser.add_argument("--min-guidance", type=float, help="SVD: guidance at the first frame (default 1.0); "
                                                           "--guidance is the last frame's")


def model_options(args) -> dict:
    """The family options given on the command line (only those set)."""
    from .model_inputs import OPTION_FLAGS

    values = {key: getattr(args, flag[2:].replace("-", "_")) for key, flag in OPTION_FLAGS.items()}
    return {k: v for k, v in values.items() if v is not None}


def resolve_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ScaleCrafterError(f"unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ScaleCrafterError("CUDA was requested but is not available")
    return device


def resolve_dtype(name: str, device):
    import torch

    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)


def explicit_config(args) -> ScaleCrafterConfig | None:
    """The schedule from --config / --preset (checked before any model is loaded), else None."""
    overrides = {"method": args.method} if args.method else {}
    if args.preset:
        return ScaleCrafterConfig.preset(args.preset, **overrides)
    if args.config and args.config != "auto":
        return ScaleCrafterConfig.from_yaml(args.config, **overrides)
    return None


def build_config(args, pipe, height: int, width: int, config: ScaleCrafterConfig | None = None) -> ScaleCrafterConfig:
    """``config`` completed from the model, or the automatic schedule for this model and size."""
    from .engine import unet_levels

    if config is None:
        overrides = {"method": args.method} if args.method else {}
        config = ScaleCrafterConfig.auto(
            pipe.train_size, (height, width), num_levels=unet_levels(pipe.unet), **overrides
        )
    if config.train_size is None:
        config.train_size = tuple(pipe.train_size)
    if config.vae_scale_factor is None:
        config.vae_scale_factor = pipe.vae_scale_factor
    return config


def render(pipe, config: ScaleCrafterConfig, prompt: str, seed: int, lr_guidance: float | None = None, **call_kwargs):
    """One seeded sample with ``config`` switched on, then off again. uint8 ``(f, h, w, 3)``.

    ``lr_guidance``: fraction of the steps re-run at the target size from the upsampled native
    sample (see :func:`~scalecrafter_video.pipelines.lr_guidance.generate_with_lr_guidance`).
    """
    import torch

    from .engine import apply_scalecrafter, remove_scalecrafter

    if lr_guidance is not None:
        from .pipelines.lr_guidance import generate_with_lr_guidance

        if not getattr(pipe, "supports_lr_guidance", False):
            raise ScaleCrafterError(f"--lr-guidance is supported for diffusers text-to-video folders (it re-noises with "
                                    f"the pipeline's scheduler), not for {type(pipe).__name__}")
        for key in ("chunk_size", "tile_size"):
            if call_kwargs.pop(key, None) is not None:
                raise ScaleCrafterError(f"--{key.replace('_', '-')} cannot be combined with --lr-guidance yet")
        generator = torch.Generator("cpu").manual_seed(seed)
        height, width = call_kwargs.pop("height"), call_kwargs.pop("width")
        return generate_with_lr_guidance(pipe, prompt, height, width, config, lr_guidance, generator=generator,
                                         **call_kwargs)[0]
    apply_scalecrafter(pipe, config)
    try:
        generator = torch.Generator("cpu").manual_seed(seed)
        return pipe(prompt, generator=generator, **call_kwargs)[0]
    finally:
        remove_scalecrafter(pipe)


def run_generate(args: argparse.Namespace) -> int:
    from .export import (check_free_space, check_output_path, side_by_side, sweep_stale_temporaries, write_json,
                         write_video)
    from .model_inputs import check_model_inputs, check_sampling_numbers, check_text, family_name, load_image
    from .pipelines import load_pipeline

    # Inputs and output locations are checked before anything is loaded or sampled.
    check_text(args.prompt)
    check_text(args.negative_prompt, "--negative-prompt")
    numbers = dict(height=args.height, width=args.width, frames=args.frames, steps=args.steps, guidance=args.guidance,
                   eta=args.eta, fps=args.fps, seed=args.seed)
    check_sampling_numbers(**numbers, negative_prompt=args.negative_prompt)
    out_path = check_output_path(args.out, overwrite=args.overwrite)
    check_output_path(str(out_path) + ".json", overwrite=args.overwrite, what="sidecar")
    for target in (out_path, Path(str(out_path) + ".json")):
        sweep_stale_temporaries(target)  # left by a killed earlier run
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    config = explicit_config(args)
    started = time.perf_counter()
    image = load_image(args.image) if args.image is not None else None
    options = model_options(args)
    pipe = load_pipeline(args.model, device=device, dtype=dtype, model_config=args.model_config, clip_path=args.clip,
                         motion_adapter=args.motion_adapter)
    check_model_inputs(pipe, image, options)
    check_sampling_numbers(steps=args.steps,
                           max_steps=getattr(getattr(pipe.scheduler, "config", None), "num_train_timesteps", None))
    height = pipe.train_size[0] if args.height is None else args.height
    width = pipe.train_size[1] if args.width is None else args.width
    pipe.check_size(height, width)
    frames = pipe.defaults.get("num_frames", 1) if args.frames is None else args.frames
    check_free_space(out_path, frames * (2 if args.compare else 1), height, width)
    config = build_config(args, pipe, height, width, config)
    call = dict(
        negative_prompt=args.negative_prompt, height=height, width=width, num_frames=args.frames,
        num_inference_steps=args.steps, guidance_scale=args.guidance, eta=args.eta, **options,
    )
    if image is not None:
        call["image"] = image
    for key in ("chunk_size", "tile_size"):
        value = getattr(args, key)
        if value is not None:
            if value < 1:
                raise ScaleCrafterError(f"--{key.replace('_', '-')} must be a positive integer, got {value}")
            call[key] = value
    video = render(pipe, config, args.prompt, args.seed, lr_guidance=args.lr_guidance, **call)
    if args.compare:
        baseline = render(pipe, config.replace(method="direct"), args.prompt, args.seed, **call)
        video = side_by_side([baseline, video], labels=["Direct-Inf", _label(config, args.lr_guidance)])
    fps = pipe.defaults.get("fps", 8) if args.fps is None else args.fps
    out = write_video(video, out_path, fps=fps, overwrite=args.overwrite)
    sidecar = {
        "prompt": args.prompt, "negative_prompt": args.negative_prompt, "seed": args.seed, "model": str(args.model),
        "height": height, "width": width, "frames": int(video.shape[0]), "fps": fps, "compare": args.compare,
        "lr_guidance": args.lr_guidance, "family": family_name(pipe), "image": args.image,
        "motion_adapter": args.motion_adapter, "options": options,
        "steps": pipe.defaults.get("num_inference_steps") if args.steps is None else args.steps,
        "guidance": pipe.defaults.get("guidance_scale") if args.guidance is None else args.guidance,
        "eta": pipe.defaults.get("eta") if args.eta is None else args.eta, "dtype": str(dtype), "device": str(device),
        "config": config.to_dict(), "seconds": round(time.perf_counter() - started, 2), "versions": _versions(),
    }
    write_json(Path(str(out) + ".json"), sidecar, overwrite=args.overwrite)
    print(f"wrote {out} ({video.shape[0]} frame(s), {video.shape[2]}x{video.shape[1]}) in {sidecar['seconds']} s")
    return 0


def _label(config: ScaleCrafterConfig, lr_guidance: float | None = None) -> str:
    name = {"scalecrafter": "ScaleCrafter", "attn-sf": "Attn-SF", "direct": "Direct-Inf"}[config.method]
    return f"{name} + LR" if lr_guidance is not None else name


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("scalecrafter-video", "torch", "diffusers", "transformers"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    return out


def run_env(args: argparse.Namespace) -> int:
    import torch

    print(f"python        {platform.python_version()} ({platform.machine()})")
    for pkg, version in _versions().items():
        if pkg != "python":
            print(f"{pkg:<18} {version or '(not installed)'}")
    print(f"cuda          {torch.cuda.is_available()} ({torch.cuda.device_count()} device(s))")
    return 0
