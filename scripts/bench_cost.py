#!/usr/bin/env python
"""The cost table: time per denoising step and peak memory of Direct-Inf, ScaleCrafter and the decode,
per model family and resolution, as ratios to Direct-Inf measured in the same run.

No weights are downloaded: each family is built at its real size from its published configuration
(the facts below: widths, depths, attention heads, context sizes) with random weights, so the time
and memory are those of the real network; only the numbers it computes are meaningless.

Modes, all through the public API (``ScaleCrafterConfig.auto`` + ``apply_scalecrafter`` on the bare
UNet, the step announced with ``denoising_step(0, 50, cfg=True)``: a step inside every tau, where
the method does all its work; steps past tau cost what Direct-Inf costs):

* ``direct``      Direct-Inf: the UNet at the target size, unchanged;
* ``redilate``    ScaleCrafter's re-dilation (the paper's layer-wise rule, ``auto``);
* ``+ndcfg``      re-dilation + noise-damped CFG (the damped unconditional pass);
* ``+disperse``   re-dilation + ndcfg + dispersed convolutions;
* ``decode``      VAE decode of one frame's latents (SVD: a chunk of ``--svd-decode-frames``
  frames, the temporal decoder's unit), plain;
* ``decode-tiled`` the same with synced-GroupNorm tiles of ``--tile`` latent pixels (default: the
  family's training latent size).

One step is one UNet call on the CFG batch ``[uncond, cond]`` (batch 2, all frames of the video).
Direct-Inf runs first and again after the other modes; the baseline is the mean of the two and
the table prints both, so the drift of a shared machine can be read next to the ratios.
Peak memory is the growth over what was allocated before the step: on CUDA
``torch.cuda.max_memory_allocated() - memory_allocated()`` (after ``reset_peak_memory_stats``); on
CPU the growth of the process's resident-set high-water mark (VmHWM, reset before each
measurement through ``/proc/self/clear_refs``) over the resident set before the step, with
glibc's mmap threshold pinned at 128 KiB so every freed tensor leaves the resident set (otherwise
memory freed by an earlier mode would be reused without showing). That is the memory the
operating system has to find for the step, the figure that decides whether it fits.

    # CPU (the README tables): the real SD 1.5 UNet and VAE, one timed step per mode, 2 threads
    python scripts/bench_cost.py --model sd1.5 --sizes 512x512,1024x1024 --threads 2 --decodes decode
    python scripts/bench_cost.py --model sd1.5 --train-scale 0.5 --sizes 1x,2x --threads 2 --decodes decode
    # GPU, every family at its training size and at 2x per side, fp16, a few minutes on one H100
    python scripts/bench_cost.py --model all --device cuda --dtype fp16 --json cost.json
    # a quick smoke test of every family's wiring (widths cut down: NOT the real cost)
    python scripts/bench_cost.py --model all --tiny --train-scale 0.25 --sizes 1x,2x --frames 2 --threads 1

Sizes are ``WIDTHxHEIGHT`` in pixels, or ``Nx`` for N times the family's training size per side.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext as _nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

REPO = Path(__file__).resolve().parent.parent
MODES = ("direct", "redilate", "+ndcfg", "+disperse")
DECODES = ("decode", "decode-tiled")


# ------------------------------------------------------------------------------------ the families
@dataclass
class Family:
    name: str
    train: tuple[int, int]  # (height, width) in pixels
    frames: int | None  # None: an image model
    levels: int  # resolution levels of the UNet (len(down_blocks))
    source: str  # where the configuration facts come from


FAMILIES = {
    "sd1.5": Family("sd1.5", (512, 512), None, 4, "runwayml/stable-diffusion-v1-5 unet + vae config.json"),
    "sdxl": Family("sdxl", (1024, 1024), None, 3, "stabilityai/stable-diffusion-xl-base-1.0 unet + vae config.json"),
    "modelscope": Family("modelscope", (256, 256), 16, 4, "damo-vilab/text-to-video-ms-1.7b unet (UNet3DConditionModel) + vae"),
    "animatediff": Family("animatediff", (512, 512), 16, 4, "SD 1.5 + guoyww/animatediff-motion-adapter-v1-5-2 (UNetMotionModel)"),
    "svd": Family("svd", (576, 1024), 14, 4, "stabilityai/stable-video-diffusion-img2vid unet + vae (temporal decoder)"),
    "videocrafter2": Family("videocrafter2", (320, 512), 16, 4, "VideoCrafter2 inference_t2v_512_v2.0.yaml (shipped in configs/)"),
}
DEFAULT_FAMILY_SIZES = "1x,2x"


def _sd_vae_config(tiny: bool, sample_size: int, scaling: float) -> dict:
    ch = (32, 64, 128, 128) if tiny else (128, 256, 512, 512)
    return dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=ch, layers_per_block=2,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                norm_num_groups=32, sample_size=sample_size, scaling_factor=scaling)


def build_unet(name: str, tiny: bool) -> torch.nn.Module:
    """The family's UNet with random weights, at its published size (``tiny``: widths cut for smoke tests)."""
    import diffusers

    sd_ch = (64, 128, 256, 256) if tiny else (320, 640, 1280, 1280)
    if name == "sd1.5":
        return diffusers.UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, block_out_channels=sd_ch, layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
        )
    if name == "sdxl":
        return diffusers.UNet2DConditionModel(
            sample_size=128, in_channels=4, out_channels=4,
            block_out_channels=(64, 128, 256) if tiny else (320, 640, 1280), layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10), attention_head_dim=(1, 2, 4) if tiny else (5, 10, 20),
            cross_attention_dim=2048, use_linear_projection=True, addition_embed_type="text_time",
            addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816, norm_num_groups=32,
        )
    if name == "modelscope":
        return diffusers.UNet3DConditionModel(
            sample_size=32, in_channels=4, out_channels=4, block_out_channels=sd_ch, layers_per_block=2,
            down_block_types=("CrossAttnDownBlock3D",) * 3 + ("DownBlock3D",),
            up_block_types=("UpBlock3D",) + ("CrossAttnUpBlock3D",) * 3,
            cross_attention_dim=1024, attention_head_dim=64, norm_num_groups=32,
        )
    if name == "animatediff":
        return diffusers.UNetMotionModel(
            sample_size=64, in_channels=4, out_channels=4, block_out_channels=sd_ch, layers_per_block=2,
            down_block_types=("CrossAttnDownBlockMotion",) * 3 + ("DownBlockMotion",),
            up_block_types=("UpBlockMotion",) + ("CrossAttnUpBlockMotion",) * 3,
            cross_attention_dim=768, num_attention_heads=8, norm_num_groups=32,
            temporal_transformer_layers_per_block=1, motion_max_seq_length=32, motion_num_attention_heads=8,
            use_motion_mid_block=True,
        )
    if name == "svd":
        return diffusers.UNetSpatioTemporalConditionModel(
            sample_size=96, in_channels=8, out_channels=4, block_out_channels=sd_ch, layers_per_block=2,
            down_block_types=("CrossAttnDownBlockSpatioTemporal",) * 3 + ("DownBlockSpatioTemporal",),
            up_block_types=("UpBlockSpatioTemporal",) + ("CrossAttnUpBlockSpatioTemporal",) * 3,
            cross_attention_dim=1024, num_attention_heads=(1, 2, 4, 4) if tiny else (5, 10, 20, 20),
            transformer_layers_per_block=1, addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=768, num_frames=14,
        )
    if name == "videocrafter2":
        from scalecrafter_video.models.ldm_pipeline import build_unet as build_ldm_unet, read_model_config

        spec = read_model_config(REPO / "configs" / "videocrafter" / "inference_t2v_512_v2.0.yaml")
        params = dict(spec.unet_params, use_checkpoint=False)
        if tiny:
            params["model_channels"] = 64
        return build_ldm_unet(SimpleNamespace(family=spec.family, unet_params=params))
    raise SystemExit(f"unknown model {name!r}; choose from {', '.join(FAMILIES)} or all")


class _LDMDecoder(torch.nn.Module):
    """The LDM autoencoder seen through the diffusers decode interface the tiled decoder uses."""

    def __init__(self, ae):
        super().__init__()
        self.ae = ae
        self.decoder, self.post_quant_conv = ae.decoder, ae.post_quant_conv

    def decode(self, z):
        return SimpleNamespace(sample=self.ae.decode(z))


def build_vae(name: str, tiny: bool) -> torch.nn.Module:
    import diffusers

    if name in ("sd1.5", "modelscope", "animatediff"):
        return diffusers.AutoencoderKL(**_sd_vae_config(tiny, 512, 0.18215))
    if name == "sdxl":
        return diffusers.AutoencoderKL(**_sd_vae_config(tiny, 1024, 0.13025))
    if name == "svd":
        ch = (32, 64, 128, 128) if tiny else (128, 256, 512, 512)
        return diffusers.AutoencoderKLTemporalDecoder(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=ch, layers_per_block=2,
            down_block_types=("DownEncoderBlock2D",) * 4, sample_size=768, scaling_factor=0.18215,
        )
    if name == "videocrafter2":
        from scalecrafter_video.models.ldm_autoencoder import AutoencoderKL
        from scalecrafter_video.models.ldm_pipeline import read_model_config

        spec = read_model_config(REPO / "configs" / "videocrafter" / "inference_t2v_512_v2.0.yaml")
        params = json.loads(json.dumps(spec.vae_params))
        if tiny:
            params["ddconfig"]["ch"] = 32
        return _LDMDecoder(AutoencoderKL(**params))
    raise SystemExit(f"unknown model {name!r}")


def make_call(name: str, unet, lat_h: int, lat_w: int, frames: int | None, device, dtype):
    """A function running one CFG UNet call (batch 2) of the family on seeded random inputs."""
    g = torch.Generator().manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(device, dtype)

    t = torch.tensor(500, device=device)
    if name in ("sd1.5", "sdxl"):
        x = rnd(2, 4, lat_h, lat_w)
        ctx = rnd(2, 77, 2048 if name == "sdxl" else 768)
        extra = {}
        if name == "sdxl":
            extra["added_cond_kwargs"] = {"text_embeds": rnd(2, 1280),
                                          "time_ids": torch.tensor([[lat_h * 8, lat_w * 8, 0, 0, lat_h * 8, lat_w * 8]] * 2,
                                                                   device=device, dtype=dtype)}
        return lambda: unet(x, t, encoder_hidden_states=ctx, **extra).sample
    if name in ("modelscope", "animatediff"):
        x = rnd(2, 4, frames, lat_h, lat_w)
        ctx = rnd(2, 77, 1024 if name == "modelscope" else 768)
        if name == "animatediff":  # UNetMotionModel takes the prompt per frame (as AnimateDiffPipeline passes it)
            ctx = ctx.repeat_interleave(frames, dim=0)
        return lambda: unet(x, t, encoder_hidden_states=ctx).sample
    if name == "svd":
        x = rnd(2, frames, 8, lat_h, lat_w)
        ctx = rnd(2, 1, 1024)
        ids = torch.tensor([[6.0, 127.0, 0.02]] * 2, device=device, dtype=dtype)
        return lambda: unet(x, t, encoder_hidden_states=ctx, added_time_ids=ids).sample
    if name == "videocrafter2":
        x = rnd(2, 4, frames, lat_h, lat_w)
        ctx = rnd(2, 77, 1024)
        ts = torch.full((2,), 500, device=device, dtype=torch.long)
        fps = torch.full((2,), 16, device=device, dtype=torch.long)
        return lambda: unet(x, ts, context=ctx, fps=fps)
    raise SystemExit(f"unknown model {name!r}")


def make_decode(name: str, vae, lat_h: int, lat_w: int, tile: int | None, svd_frames: int, device, dtype):
    from scalecrafter_video.tiled_decode import synced_tiled_decode, synced_tiled_decode_temporal

    g = torch.Generator().manual_seed(1)
    if name == "svd":
        z = torch.randn(svd_frames, 4, lat_h, lat_w, generator=g).to(device, dtype)
        if tile is None:
            return lambda: vae.decode(z, num_frames=svd_frames).sample
        return lambda: synced_tiled_decode_temporal(vae, z, tile, num_frames=svd_frames)
    z = torch.randn(1, 4, lat_h, lat_w, generator=g).to(device, dtype)
    if tile is None:
        return lambda: vae.decode(z).sample
    return lambda: synced_tiled_decode(vae, z, tile)


# ------------------------------------------------------------------------------------ measuring
_LIBC = None


def _pin_mmap_threshold() -> bool:
    """glibc: allocations above 128 KiB come from mmap and go back to the OS when freed."""
    global _LIBC
    try:
        _LIBC = ctypes.CDLL("libc.so.6")
        return _LIBC.mallopt(-3, 128 * 1024) == 1  # M_MMAP_THRESHOLD (also stops its dynamic growth)
    except (OSError, AttributeError):
        return False


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class PeakMemory:
    """Peak bytes allocated above the level at entry: CUDA allocator, or the CPU resident set."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current resident set
            self.base = _status_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        else:
            self.peak = max(_status_kib("VmHWM") * 1024 - self.base, 0)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn, device, warmup: int, steps: int) -> tuple[float, int]:
    """Median seconds of ``steps`` timed calls after ``warmup`` calls, and the peak memory over them."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        times, peak = [], 0
        for _ in range(steps):
            with PeakMemory(device) as pm:
                start = time.perf_counter()
                out = fn()
                _sync(device)
                times.append(time.perf_counter() - start)
                del out
            peak = max(peak, pm.peak)
    return statistics.median(times), peak


def parse_size(text: str, train: tuple[int, int]) -> tuple[int, int]:
    """``WxH`` pixels or ``Nx`` (N times the training size per side) -> (height, width)."""
    text = text.strip().lower()
    if text.endswith("x") and text[:-1].replace(".", "", 1).isdigit():
        f = float(text[:-1])
        return max(64, int(round(train[0] * f / 64)) * 64), max(64, int(round(train[1] * f / 64)) * 64)
    w, h = (int(v) for v in text.split("x"))
    return h, w


def train_size(fam: Family, scale: float) -> tuple[int, int]:
    """The family's training size, or that times ``--train-scale`` (the method then treats the network
    as trained there: the schedule of a larger upscale at a smaller, cheaper target)."""
    if scale == 1:
        return fam.train
    return max(64, int(round(fam.train[0] * scale / 64)) * 64), max(64, int(round(fam.train[1] * scale / 64)) * 64)


def config_for(mode: str, fam: Family, train: tuple[int, int], size: tuple[int, int]):
    from scalecrafter_video import ScaleCrafterConfig

    if mode == "direct":
        return ScaleCrafterConfig.auto(train, size, num_levels=fam.levels, method="direct")
    return ScaleCrafterConfig.auto(train, size, num_levels=fam.levels, ndcfg=mode != "redilate",
                                   disperse=mode == "+disperse")


def run_family(args, name: str) -> dict:
    from scalecrafter_video import apply_scalecrafter, denoising_step, remove_scalecrafter

    fam = FAMILIES[name]
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    frames = None if fam.frames is None else (args.frames or fam.frames)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    # On CUDA the weights are created (and randomly initialised) on the GPU: seconds instead of minutes
    with torch.device(device) if device.type == "cuda" else _nullcontext():
        unet = build_unet(name, args.tiny).eval().requires_grad_(False).to(device, dtype)
        vae = build_vae(name, args.tiny).eval().requires_grad_(False).to(device, dtype)
    if name == "videocrafter2":
        unet.dtype = dtype  # the LDM UNet casts its input to this attribute
    build_s = time.perf_counter() - t0
    weights = sum(p.numel() * p.element_size() for p in unet.parameters())
    train = train_size(fam, args.train_scale)
    out = {"model": name, "source": fam.source, "train_size": list(train), "frames": frames,
           "unet_params": sum(p.numel() for p in unet.parameters()), "unet_weights_bytes": weights,
           "vae_params": sum(p.numel() for p in vae.parameters()), "build_seconds": round(build_s, 1),
           "tiny": args.tiny, "sizes": []}
    for size_text in args.sizes.split(","):
        h, w = parse_size(size_text, train)
        lat_h, lat_w = h // 8, w // 8
        row = {"size": f"{w}x{h}", "latent": f"{lat_w}x{lat_h}", "modes": {}}
        call = make_call(name, unet, lat_h, lat_w, frames, device, dtype)
        with torch.inference_mode():  # one untimed plain call at this size, so no mode pays first-call costs
            call()
            _sync(device)
        # Direct-Inf is measured first and again last: the baseline is their mean and their spread
        # says how much the machine drifted while the modes ran (read ratios within it as noise).
        wanted = [m for m in MODES if m in args.modes.split(",")]
        for mode in wanted + (["direct"] if "direct" in wanted else []):
            try:
                cfg = config_for(mode, fam, train, (h, w))
                apply_scalecrafter(unet, cfg)
            except Exception as exc:  # e.g. dispersion refused for per-axis factors, or no upscaling at 1x
                row["modes"][mode] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            try:
                def step():
                    with denoising_step(0, 50, cfg=True):
                        return call()

                seconds, peak = measure(step, device, args.warmup, args.steps)
                if mode in row["modes"] and "seconds" in row["modes"][mode]:  # the closing Direct-Inf run
                    first = row["modes"][mode]
                    runs = [first["seconds"], seconds]
                    row["modes"][mode] = {"seconds": statistics.mean(runs), "peak_bytes": max(first["peak_bytes"], peak),
                                          "seconds_first_last": runs,
                                          "drift": abs(runs[1] - runs[0]) / statistics.mean(runs)}
                else:
                    row["modes"][mode] = {"seconds": seconds, "peak_bytes": peak}
            except Exception as exc:
                row["modes"][mode] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            finally:
                remove_scalecrafter(unet)
            _progress(name, row, mode)
        tile = args.tile or min(train) // 8
        for mode in [m for m in DECODES if m in args.decodes.split(",")]:
            try:
                fn = make_decode(name, vae, lat_h, lat_w, tile if mode == "decode-tiled" else None,
                                 args.svd_decode_frames, device, dtype)
                seconds, peak = measure(fn, device, args.warmup, args.decode_steps)
                row["modes"][mode] = {"seconds": seconds, "peak_bytes": peak, "tile": tile if mode == "decode-tiled" else None}
            except Exception as exc:
                row["modes"][mode] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
            _progress(name, row, mode)
        base = row["modes"].get("direct", {})
        for rec in row["modes"].values():
            if "seconds" in rec and "seconds" in base:
                rec["time_ratio"] = rec["seconds"] / base["seconds"]
                rec["memory_ratio"] = rec["peak_bytes"] / base["peak_bytes"] if base["peak_bytes"] else None
        out["sizes"].append(row)
    return out


def _progress(name, row, mode):
    rec = row["modes"][mode]
    text = rec.get("error") or f"{rec['seconds']:.3f} s, peak +{rec['peak_bytes'] / 2**20:.0f} MiB"
    print(f"  [{name} {row['size']}] {mode}: {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ the table
def table(result: dict, device_name: str, dtype: str) -> str:
    frames = f", {result['frames']} frames" if result["frames"] else ""
    lines = [f"### {result['model']} ({result['unet_params'] / 1e6:.0f}M-parameter UNet{frames}; "
             f"{device_name}, {dtype}){' -- TINY widths, not the real cost' if result['tiny'] else ''}", "",
             "| size (latent) | mode | s / step | time vs Direct-Inf | peak memory | memory vs Direct-Inf |",
             "|---|---|---|---|---|---|"]
    for row in result["sizes"]:
        for mode, rec in row["modes"].items():
            label = mode if mode not in DECODES else (
                f"{mode} (tile {rec.get('tile')})" if mode == "decode-tiled" else mode)
            if "error" in rec:
                lines.append(f"| {row['size']} ({row['latent']}) | {label} | n/a: {rec['error'][:90]} | | | |")
                continue
            tr = f"{rec['time_ratio']:.3f}x" if "time_ratio" in rec else ""
            if "drift" in rec:
                tr += f" (first/last {rec['seconds_first_last'][0]:.3g} / {rec['seconds_first_last'][1]:.3g} s)"
            mr = f"{rec['memory_ratio']:.3f}x" if rec.get("memory_ratio") else ""
            lines.append(f"| {row['size']} ({row['latent']}) | {label} | {rec['seconds']:.3f} | {tr} | "
                         f"{rec['peak_bytes'] / 2**20:,.0f} MiB | {mr} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sd1.5", help=f"{', '.join(FAMILIES)}, or all (each in its own process)")
    ap.add_argument("--sizes", default=None,
                    help="comma list of WIDTHxHEIGHT pixels or Nx of the training size "
                         f"(default {DEFAULT_FAMILY_SIZES})")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default=None, help="default fp16 on CUDA, fp32 on CPU")
    ap.add_argument("--frames", type=int, default=None, help="frames per video (default: the family's)")
    ap.add_argument("--steps", type=int, default=None, help="timed UNet steps per mode (default 1 on CPU, 2 on CUDA)")
    ap.add_argument("--decode-steps", type=int, default=1, help="timed decodes per decode mode")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed calls per mode before the timed ones (default 0 on CPU, 1 on CUDA; every size "
                         "also starts with one untimed plain call)")
    ap.add_argument("--tile", type=int, default=None, help="latent tile for decode-tiled (default: training latent side)")
    ap.add_argument("--decodes", default=",".join(DECODES), help="which decodes to time (comma list; '' for none)")
    ap.add_argument("--modes", default=",".join(MODES), help="which UNet modes to time (comma list; keep direct for ratios)")
    ap.add_argument("--train-scale", type=float, default=1.0,
                    help="treat the network as trained at this fraction of its training size (cheap CPU runs of "
                         "a 2x schedule: --train-scale 0.5 --sizes 1x,2x); the network and its cost stay real")
    ap.add_argument("--svd-decode-frames", type=int, default=2, help="frames per SVD temporal-decoder call")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--tiny", action="store_true", help="cut widths down (wiring smoke test; figures NOT the real cost)")
    ap.add_argument("--json", default=None, help="also write every figure here")
    ap.add_argument("--child-json", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    cuda = args.device.startswith("cuda")
    args.dtype = args.dtype or ("fp16" if cuda else "fp32")
    args.steps = args.steps or (2 if cuda else 1)
    args.warmup = (1 if cuda else 0) if args.warmup is None else args.warmup
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True  # what users run; SDPA picks flash / memory-efficient kernels
        torch.backends.cudnn.allow_tf32 = True
    else:
        _pin_mmap_threshold()
    device_name = (torch.cuda.get_device_name(args.device) if cuda
                   else f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")

    names = list(FAMILIES) if args.model == "all" else [args.model]
    if args.model != "all" and args.model not in FAMILIES:
        raise SystemExit(f"unknown model {args.model!r}; choose from {', '.join(FAMILIES)} or all")
    if args.sizes is None:
        args.sizes = DEFAULT_FAMILY_SIZES
    results = []
    if len(names) == 1:
        results.append(run_family(args, names[0]))
    else:  # one process per family: each starts with empty memory, and a failure stays its own
        for name in names:
            out = Path(args.json or "bench_cost.json").with_suffix(f".{name}.part.json")
            cmd = [sys.executable, __file__, "--model", name, "--sizes", args.sizes, "--device", args.device,
                   "--dtype", args.dtype, "--steps", str(args.steps), "--decode-steps", str(args.decode_steps),
                   "--warmup", str(args.warmup), "--svd-decode-frames", str(args.svd_decode_frames),
                   "--decodes", args.decodes, "--modes", args.modes, "--train-scale", str(args.train_scale), "--child-json", str(out)]
            for flag, value in (("--frames", args.frames), ("--tile", args.tile), ("--threads", args.threads)):
                if value:
                    cmd += [flag, str(value)]
            if args.tiny:
                cmd.append("--tiny")
            proc = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                [str(REPO), os.environ.get("PYTHONPATH", "")])))
            if proc.returncode == 0 and out.exists():
                results.append(json.loads(out.read_text()))
                out.unlink()
            else:
                results.append({"model": name, "error": f"exit code {proc.returncode}"})
                print(f"### {name}: failed (exit code {proc.returncode})\n")
        for r in results:
            if "error" not in r:
                print(table(r, device_name, args.dtype) + "\n")
    if args.child_json:
        Path(args.child_json).write_text(json.dumps(results[0]))
        return 0
    if len(names) == 1:
        print(table(results[0], device_name, args.dtype))
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device_name, "dtype": args.dtype, "torch": torch.__version__,
                                               "steps": args.steps, "warmup": args.warmup, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
