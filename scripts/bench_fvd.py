#!/usr/bin/env python
"""FVD throughput: the bare I3D, and the whole `fvd` pipeline on mp4 files, side by side in one run.

For each device it prints, at 16x224x224 clips:

* bare I3D videos/s on preprocessed clips already in memory, plain port vs optimised (BN folded +
  channels_last_3d), and the max |delta| between their logits;
* end-to-end videos/s of ``compute_fvd`` (what ``scalecrafter-video fvd`` runs) on two folders of
  mp4 files made here (``--videos`` per set, ``--height`` x ``--width``, ``--video-frames`` frames):
  decoding, the clip rule, the TF1 resize, the optimised I3D, a fresh feature cache, statistics;
  with the threaded loader (default workers) and without it (``workers=0``), and whether both
  gave the same FVD bit for bit;
* the ratio end-to-end / bare optimised I3D (the target is >= 0.90).

Measurements alternate (bare, threaded, sequential) for ``--rounds`` rounds and the median of each
is kept, so a busy machine slows all of them alike. fp32 with TF32 off (the reference protocol)
unless ``--precision`` says otherwise (non-reference, printed as such).

    python scripts/bench_fvd.py --random-weights               # CPU (and CUDA when present), no download
    python scripts/bench_fvd.py --random-weights --threads 2 --videos 16 --batch-size 8
    python scripts/bench_fvd.py --devices cuda --batch-size 32 --videos 256 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
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


def make_mp4_folder(folder: Path, n: int, frames: int, height: int, width: int, seed: int) -> Path:
    """``n`` mp4 files of smooth random content (8x8 blocks drifting one pixel per frame), H.264."""
    from scalecrafter_video.export import write_video

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        blocks = rng.integers(0, 256, size=(height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
        big = blocks.repeat(8, 0).repeat(8, 1)
        video = np.stack([big[t % 8 : t % 8 + height, t % 8 : t % 8 + width] for t in range(frames)])
        write_video(video, folder / f"clip{i:05d}.mp4", fps=8)
    return folder


def bench_pipeline(real: Path, fake: Path, model, device, args, batch_size, workers, cache_root: Path,
                   max_videos=None) -> tuple[float, float]:
    """videos/s of compute_fvd over both folders (fresh feature cache), and the FVD it gave."""
    from scalecrafter_video.metrics import compute_fvd

    cache = Path(tempfile.mkdtemp(dir=cache_root))
    _sync(device)
    start = time.perf_counter()
    result = compute_fvd(real, fake, num_frames=args.num_frames, batch_size=batch_size, device=device,
                         model=model, cache_dir=cache, progress=False, workers=workers, prefetch=args.prefetch,
                         max_videos=max_videos)
    _sync(device)
    elapsed = time.perf_counter() - start
    return (result.num_real + result.num_fake) / elapsed, result.fvd


class _Precision(torch.nn.Module):
    """Non-reference: run the network under autocast (the clips stay fp32 until the first conv)."""

    def __init__(self, model, dtype):
        super().__init__()
        self.model, self.dtype = model, dtype
        self.is_optimized = getattr(model, "is_optimized", False)
        self.weights_fingerprint = getattr(model, "weights_fingerprint", None) or "autocast"

    def forward(self, x):
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.model(x).float()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=None, help="clips per forward (default 8 on CPU, 32 on CUDA)")
    ap.add_argument("--batches", type=int, default=2, help="timed bare forward passes per path")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--num-frames", type=int, default=16, help="clip length T (16 = FVD_16)")
    ap.add_argument("--videos", type=int, default=None,
                    help="mp4 files per set for the end-to-end figure (default 2 batches on CPU, 8 on CUDA)")
    ap.add_argument("--video-frames", type=int, default=16, help="frames in each mp4 (>= --num-frames)")
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--workers", type=int, default=None, help="loader threads (default: the fvd command's default)")
    ap.add_argument("--prefetch", type=int, default=2, help="batches the loader may run ahead")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds (median kept)")
    ap.add_argument("--no-sequential", action="store_true", help="skip the workers=0 end-to-end figure")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain-port bare figure")
    ap.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                    help="fp32 (TF32 off) is the reference protocol; bf16/fp16 are NOT (autocast, CUDA)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--devices", default="auto", help="comma list (cpu,cuda) or auto: cpu plus cuda when present")
    ap.add_argument("--random-weights", action="store_true", help="random I3D instead of the real weights")
    ap.add_argument("--i3d-weights", default=None)
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)

    from scalecrafter_video.metrics.i3d import I3D
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

    results = {
        "num_frames": args.num_frames, "batches": args.batches, "rounds": args.rounds,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
        "weights": "random" if args.random_weights else "real", "precision": args.precision,
        "video": f"{args.video_frames}x{args.height}x{args.width} mp4 (H.264)", "devices": {},
    }
    work = Path(tempfile.mkdtemp(prefix="bench_fvd_"))
    load_before = os.getloadavg()
    try:
        _run(args, devices, plain_cpu, results, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    results["loadavg_1min_before_after"] = [load_before[0], load_after[0]]
    print(f"machine load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after "
          f"({os.cpu_count()} CPUs): on a shared machine the side-by-side ratio is the figure to read")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


def _run(args, devices, plain_cpu, results, work: Path) -> None:
    from scalecrafter_video.metrics.features import default_workers
    from scalecrafter_video.metrics.i3d import optimize_i3d

    made: dict[int, tuple[Path, Path]] = {}
    for dev_name in devices:
        device = torch.device(dev_name)
        bs = args.batch_size or (32 if device.type == "cuda" else 8)
        n_videos = args.videos or bs * (8 if device.type == "cuda" else 2)
        if n_videos not in made:
            made[n_videos] = (
                make_mp4_folder(work / f"real{n_videos}", n_videos, args.video_frames, args.height, args.width, seed=1),
                make_mp4_folder(work / f"fake{n_videos}", n_videos, args.video_frames, args.height, args.width, seed=2),
            )
        real, fake = made[n_videos]
        plain = plain_cpu.to(device)
        fast = optimize_i3d(plain)
        if args.precision != "fp32":
            fast = _Precision(fast, torch.bfloat16 if args.precision == "bf16" else torch.float16)
        gen = torch.Generator().manual_seed(0)
        x = (torch.rand(bs, 3, args.num_frames, 224, 224, generator=gen) * 2 - 1).to(device)
        workers = default_workers(device) if args.workers is None else args.workers

        # warm the pipeline once (decoder libraries, allocator, cuDNN plans) on one batch per set
        bench_pipeline(real, fake, fast, device, args, bs, workers, work, max_videos=min(bs, n_videos))
        plain_vps = None
        fast_runs, thr_runs, seq_runs, fvds = [], [], [], []
        if not args.no_plain:
            plain_vps, plain_out = bench(plain, x, args.batches, args.warmup)
        for _ in range(args.rounds):
            vps, fast_out = bench(fast, x, args.batches, args.warmup)
            fast_runs.append(vps)
            vps, fvd_thr = bench_pipeline(real, fake, fast, device, args, bs, workers, work)
            thr_runs.append(vps)
            fvds.append(fvd_thr)
            if not args.no_sequential:
                vps, fvd_seq = bench_pipeline(real, fake, fast, device, args, bs, 0, work)
                seq_runs.append(vps)
                fvds.append(fvd_seq)
        fast_vps = statistics.median(fast_runs)
        thr_vps = statistics.median(thr_runs)
        seq_vps = statistics.median(seq_runs) if seq_runs else None
        entry = {
            "batch_size": bs, "videos_per_set": n_videos, "workers": workers, "prefetch": args.prefetch,
            "optimized_videos_per_s": fast_vps, "optimized_runs": fast_runs,
            "fvd_pipeline_videos_per_s": thr_vps, "fvd_pipeline_runs": thr_runs,
            "fvd_pipeline_sequential_videos_per_s": seq_vps, "fvd_pipeline_sequential_runs": seq_runs,
            "ratio_pipeline_to_bare": thr_vps / fast_vps,
            "ratio_sequential_to_bare": seq_vps / fast_vps if seq_vps else None,
            "fvd_identical_across_loaders": len(set(fvds)) == 1,
        }
        if plain_vps is not None:
            delta = (plain_out.float() - fast_out.float()).abs().max().item()
            scale = plain_out.abs().max().item()
            entry.update(plain_videos_per_s=plain_vps, speedup=fast_vps / plain_vps, max_abs_delta=delta, max_abs_logit=scale)
        results["devices"][dev_name] = entry
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else results["machine"]
        print(f"[{dev_name}: {name}] batch {bs} x {args.num_frames}x224x224, {torch.get_num_threads()} CPU threads, "
              f"{results['weights']} weights, {args.precision}{'' if args.precision == 'fp32' else ' (NOT the reference protocol)'}, "
              f"median of {args.rounds} round(s)")
        if plain_vps is not None:
            print(f"  bare I3D, plain      {plain_vps:8.3f} videos/s")
        print(f"  bare I3D, optimized  {fast_vps:8.3f} videos/s"
              + (f"  (x{fast_vps / plain_vps:.2f} plain; max |delta| {entry['max_abs_delta']:.3g}, "
                 f"max |logit| {entry['max_abs_logit']:.3g})" if plain_vps is not None else ""))
        print(f"  fvd pipeline         {thr_vps:8.3f} videos/s  = {thr_vps / fast_vps:.3f} x bare optimized  "
              f"({2 * n_videos} mp4 files {results['video']}, {workers} loader threads, prefetch {args.prefetch})")
        if seq_vps is not None:
            print(f"  fvd pipeline, no loader threads {seq_vps:8.3f} videos/s  = {seq_vps / fast_vps:.3f} x bare optimized")
            print(f"  FVD identical with and without loader threads: {entry['fvd_identical_across_loaders']}")


if __name__ == "__main__":
    sys.exit(main())
