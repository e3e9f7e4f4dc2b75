"""Time of synchronized tiled decoding vs an untiled decode, side by side, on the real-size SD VAE.

Builds diffusers' ``AutoencoderKL`` with Stable Diffusion's configuration (block_out_channels
128/256/512/512, layers_per_block 2, 4 latent channels, 32 groups) and seeded random weights (time
and memory are those of the real model; no download), decodes smooth random latents of each frame
size untiled and tiled (latent tile ``side / 2`` by default: 3 x 3 tiles with the quarter overlap),
and prints per size the best-of-``--repeat`` seconds (runs interleaved), the tiled / untiled ratio (the overlap's extra
pixels included) and max |tiled - untiled| (the seam error). ``--old FILE`` also times another
``tiled_decode`` module (e.g. the multi-pass one: ``git show 320c95f:scalecrafter_video/tiled_decode.py
> /tmp/old_td.py``) on the same inputs.

    python scripts/bench_tiled_decode.py --sizes 512 1024 [--tile 32 64] [--threads 2]
        [--device cuda --dtype float16] [--old /tmp/old_td.py] [--old-pool] [--repeat 2] [--clock cpu]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time


def sd_vae(device: str, dtype):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2, norm_num_groups=32, sample_size=512,
    )
    return vae.eval().to(device=device, dtype=dtype)


def smooth_latents(side: int, device: str, dtype):
    """``(1, 4, side, side)`` latents: 8x8 Gaussian noise (std 2) upsampled bicubically."""
    import torch

    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 2
    return torch.nn.functional.interpolate(z, size=(side, side), mode="bicubic", align_corners=False).to(device, dtype)


def timed(fns: dict, repeat: int, device: str, clock=time.perf_counter) -> tuple[dict, dict]:
    """Best-of-``repeat`` seconds of each of ``fns`` (name -> callable), run interleaved round by
    round so that machine load drifting over the run hits them alike; and their last outputs.
    ``clock``: wall time, or ``time.process_time`` (CPU seconds of the process, all threads: on a
    shared machine the steadier measure of the work done)."""
    import torch

    best, outs = {k: float("inf") for k in fns}, {}
    for _ in range(repeat):
        for name, fn in fns.items():
            outs.pop(name, None)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = clock()
            outs[name] = fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best[name] = min(best[name], clock() - t0)
    return best, outs


def _old_pool(norm, stats):
    """The pooled statistics before 2026-12: mu = sum_t w_t mu_t, var = sum_t w_t v_t n_t / (n_t - 1)."""
    import torch

    n = torch.tensor([s[0] for s in stats], dtype=torch.float64, device=stats[0][1].device)
    w = (n / n.sum())[:, None, None]
    mus = torch.stack([s[1].double() for s in stats])
    vs = torch.stack([s[2].double() for s in stats])
    return (w * mus).sum(0).float(), (w * vs * (n / (n - 1))[:, None, None]).sum(0).float()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="frame sides in pixels")
    ap.add_argument("--tile", type=int, nargs="+", default=None,
                    help="latent tile size per frame size (default: latent side / 2)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time, or the process's CPU time (steadier on a shared CPU machine)")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--old", default=None, help="also time this file's synced_tiled_decode (another version)")
    ap.add_argument("--old-pool", action="store_true",
                    help="also report max|diff| of one more (untimed) tiled decode with the pre-2026-12 pooled "
                         "variance (mean of Bessel-corrected tile variances, no between-tile term)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import torch

    from scalecrafter_video.tiled_decode import synced_tiled_decode, tile_starts

    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    old = None
    if args.old:
        spec = importlib.util.spec_from_file_location("old_tiled_decode", args.old)
        old = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(old)
    tiles = args.tile or [s // 16 for s in args.sizes]
    if len(tiles) != len(args.sizes):
        ap.error("--tile needs one value per size")
    vae = sd_vae(args.device, dtype)
    rows = []
    with torch.no_grad():
        for size, tile in zip(args.sizes, tiles):
            side = size // 8
            z = smooth_latents(side, args.device, dtype)
            n = len(tile_starts(side, tile, max(int(tile * 0.75), 1))) ** 2
            fns = {"untiled": lambda: vae.decode(z).sample, "tiled": lambda: synced_tiled_decode(vae, z, tile)}
            if old is not None:
                fns["old"] = lambda: old.synced_tiled_decode(vae, z, tile)
            clock = time.process_time if args.clock == "cpu" else time.perf_counter
            t, outs = timed(fns, args.repeat, args.device, clock)
            ref = outs.pop("untiled").float()
            diff = {k: (v.float() - ref).abs() for k, v in outs.items()}
            row = {"size": size, "latent": side, "tile": tile, "tiles": n, "untiled_s": round(t["untiled"], 2),
                   "tiled_s": round(t["tiled"], 2), "ratio": round(t["tiled"] / t["untiled"], 3),
                   "max_abs_diff": round(diff["tiled"].max().item(), 4),
                   "mean_abs_diff": round(diff["tiled"].mean().item(), 5)}
            if old is not None:
                row.update(old_s=round(t["old"], 2), old_ratio=round(t["old"] / t["untiled"], 3),
                           old_max_abs_diff=round(diff["old"].max().item(), 4),
                           old_mean_abs_diff=round(diff["old"].mean().item(), 5))
            if args.old_pool:
                from scalecrafter_video.ops import groupnorm_stats as gn

                exact = gn.pool_statistics
                gn.pool_statistics = _old_pool
                try:
                    y = synced_tiled_decode(vae, z, tile)
                finally:
                    gn.pool_statistics = exact
                d = (y.float() - ref).abs()
                row.update(old_pool_max_abs_diff=round(d.max().item(), 4),
                           old_pool_mean_abs_diff=round(d.mean().item(), 5))
                del y, d
            del outs, diff, ref
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nSD VAE (random weights), {args.device} {args.dtype}, threads {torch.get_num_threads()}, "
          f"{args.clock} seconds")
    head = f"{'frame':>9} {'tiles':>9} {'untiled s':>10} {'tiled s':>9} {'tiled/untiled':>14} {'max|diff|':>10}"
    if old is not None:
        head += f" {'old s':>9} {'old/untiled':>12} {'old max|diff|':>14}"
    if args.old_pool:
        head += f" {'old-pool max|diff|':>19}"
    print(head)
    for r in rows:
        line = (f"{r['size']:>4}x{r['size']:<4} {r['tiles']:>3} x{r['tile']:>3}  {r['untiled_s']:>10} "
                f"{r['tiled_s']:>9} {r['ratio']:>13}x {r['max_abs_diff']:>10}")
        if old is not None:
            line += f" {r['old_s']:>9} {r['old_ratio']:>11}x {r['old_max_abs_diff']:>14}"
        if args.old_pool:
            line += f" {r['old_pool_max_abs_diff']:>19}"
        print(line)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
