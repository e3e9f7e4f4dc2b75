#!/usr/bin/env python
"""I3D throughput at 16x224x224: plain port vs optimised (BN folded + channels_last_3d).

Prints videos/s for each path and device and the max |delta| between their logits.

    python scripts/bench_fvd.py                      # CPU (and CUDA when present), real weights
    python scripts/bench_fvd.py --batch-size 8 --batches 3 --json bench.json
    python scripts/bench_fvd.py --random-weights     # no download needed
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def bench(model, x: torch.Tensor, batches: int, warmup: int) -> tuple[float, torch.Tensor]:
    """videos/s over ``batches`` timed forwards of ``x`` ``(B, 3, T, 224, 224)``; returns the last logits too."""
    for _ in range(warmup):
        out = model(x)
    _sync(x.device)
    start = time.perf_counter()
    for _ in range(batches):
        out = model(x)
    _sync(x.device)
    elapsed = time.perf_counter() - start
    return batches * x.shape[0] / elapsed, out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--batches", type=int, default=2, help="timed forward passes per path")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--num-frames", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--devices", default="auto", help="comma list (cpu,cuda) or auto: cpu plus cuda when present")
    ap.add_argument("--random-weights", action="store_true", help="random I3D instead of the real weights")
    ap.add_argument("--i3d-weights", default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    from scalecrafter_video.metrics.i3d import I3D, optimize_i3d
    from scalecrafter_video.metrics.i3d_weights import load_i3d

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" else args.devices.split(",")

    if args.random_weights:
        plain_cpu = I3D().eval().requires_grad_(False)
    else:
        plain_cpu = load_i3d(weights=args.i3d_weights)
    gen = torch.Generator().manual_seed(0)
    x_cpu = torch.rand(args.batch_size, 3, args.num_frames, 224, 224, generator=gen) * 2 - 1

    results = {
        "batch_size": args.batch_size, "num_frames": args.num_frames, "batches": args.batches,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "weights": "random" if args.random_weights else "real", "devices": {},
    }
    for dev_name in devices:
        device = torch.device(dev_name)
        plain = plain_cpu.to(device)
        fast = optimize_i3d(plain)
        x = x_cpu.to(device)
        plain_vps, plain_out = bench(plain, x, args.batches, args.warmup)
        fast_vps, fast_out = bench(fast, x, args.batches, args.warmup)
        delta = (plain_out - fast_out).abs().max().item()
        scale = plain_out.abs().max().item()
        results["devices"][dev_name] = {
            "plain_videos_per_s": plain_vps, "optimized_videos_per_s": fast_vps, "speedup": fast_vps / plain_vps,
            "max_abs_delta": delta, "max_abs_logit": scale,
        }
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else results["machine"]
        print(f"[{dev_name}: {name}] batch {args.batch_size} x {args.num_frames}x224x224, "
              f"{torch.get_num_threads()} CPU threads, {results['weights']} weights")
        print(f"  plain      {plain_vps:8.3f} videos/s")
        print(f"  optimized  {fast_vps:8.3f} videos/s  (x{fast_vps / plain_vps:.2f})")
        print(f"  max |delta| {delta:.3g} (max |logit| {scale:.3g})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
