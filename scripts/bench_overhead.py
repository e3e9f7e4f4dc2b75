#!/usr/bin/env python
"""Cost of each ScaleCrafter mode against Direct-Inf on the same UNet and resolution.

Every mode runs the same sampling trajectory (``--steps`` DDIM timesteps, CFG batch
``[uncond, cond]``) on the same seeded UNet3DConditionModel; modes are interleaved round by
round and the median is kept, so machine noise hits all of them alike. Peak memory: on CUDA
``max_memory_allocated``; on CPU each mode runs in a fresh subprocess and reports the peak
resident set size (whole process) and the peak growth during sampling.

    python scripts/bench_overhead.py                  # CPU-sized defaults
    python scripts/bench_overhead.py --device cuda --channels 320 640 1280 1280 --size 64 --frames 16
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

TAU = 0.7


def modes(levels: int) -> dict[str, dict]:
    inner = {f"down_blocks.{i}.*": None for i in range(1, levels)}
    inner.update({"mid_block.*": None})
    inner.update({f"up_blocks.{i}.*": None for i in range(levels - 1)})

    def table(d):
        return {k: d for k in inner}

    deep = {f"down_blocks.{levels - 1}.*": 4, "mid_block.*": 4, "up_blocks.0.*": 4}
    return {
        "direct": {"method": "direct"},
        "attn-sf": {"method": "attn-sf"},
        "redilate-int": {"dilation": table(2), "dilate_tau": TAU},
        "redilate-frac": {"dilation": table(2.5), "dilate_tau": TAU},
        "ndcfg": {"dilation": table(2), "dilate_tau": TAU, "ndcfg_dilation": {"mid_block.*": 2}, "ndcfg_tau": TAU},
        "disperse": {"dilation": deep, "dilate_tau": TAU, "disperse": list(deep), "disperse_tau": TAU},
    }


def build(args):
    from diffusers import DDIMScheduler, UNet3DConditionModel

    torch.manual_seed(0)
    unet = UNet3DConditionModel(
        sample_size=args.size // 2, block_out_channels=tuple(args.channels), layers_per_block=2,
        norm_num_groups=min(32, args.channels[0]), cross_attention_dim=args.context_dim, attention_head_dim=8,
    ).eval().to(args.device)
    sched = DDIMScheduler(num_train_timesteps=1000, steps_offset=1)
    sched.set_timesteps(args.steps)
    return unet, sched


class _Owner:
    def __init__(self, unet, scheduler):
        self.unet, self.scheduler = unet, scheduler


def run_mode(args, name: str, unet=None, sched=None) -> dict:
    """Time one trajectory of ``name``; returns seconds and memory figures."""
    from scalecrafter_video import ScaleCrafterConfig, apply_scalecrafter, denoising_step, remove_scalecrafter

    if unet is None:
        unet, sched = build(args)
    levels = len(unet.down_blocks)
    cfg = ScaleCrafterConfig.from_dict({"train_size": (args.size // 2, args.size // 2), "vae_scale_factor": 1,
                                        **modes(levels)[name]})
    owner = _Owner(unet, sched)
    apply_scalecrafter(owner, cfg)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, args.frames, args.size, args.size, generator=gen).to(args.device)
    x = torch.cat([x, x])
    ctx = torch.randn(2, 8, args.context_dim, generator=gen).to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    clock = time.process_time if getattr(args, "clock", "wall") == "cpu" else time.perf_counter
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    rss_before = _rss_bytes()
    with torch.inference_mode():
        sync()
        start = clock()
        n = len(sched.timesteps)
        for i, t in enumerate(sched.timesteps):
            with denoising_step(i, n, cfg=True):  # our own loop: a [uncond, cond] batch at step i
                unet(x, t, encoder_hidden_states=ctx)
        sync()
        seconds = clock() - start
    remove_scalecrafter(owner)
    out = {"seconds": seconds}
    if args.device.startswith("cuda"):
        out["peak_bytes"] = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        out.update(peak_bytes=peak, growth_bytes=max(peak - rss_before, 0))
    return out


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128, 128])
    p.add_argument("--context-dim", type=int, default=64)
    p.add_argument("--size", type=int, default=32, help="latent side at the target size (native = size / 2)")
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--steps", type=int, default=10, help="timesteps per trajectory")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch CPU threads (1 is steadier on a shared machine)")
    p.add_argument("--json", help="also write the figures here")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time, or the process's CPU time (with --threads 1 the steadier measure on a shared CPU)")
    p.add_argument("--modes", nargs="+", help="only these modes (direct is always run)")
    p.add_argument("--skip-memory", action="store_true", help="time only (no peak-memory subprocesses)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:  # one memory measurement in a fresh process
        print(json.dumps(run_mode(args, args.child)))
        return

    names = list(modes(len(args.channels)))
    if args.modes:
        names = ["direct"] + [n for n in names if n in args.modes and n != "direct"]
    unet, sched = build(args)
    run_mode(args, "direct", unet, sched)  # warm-up
    times = {n: [] for n in names}
    for _ in range(args.rounds):
        for n in names:
            times[n].append(run_mode(args, n, unet, sched)["seconds"])
    memory = {}
    for n in names:
        if args.skip_memory:
            memory[n] = {"peak_bytes": float("nan")}
        elif args.device.startswith("cuda"):
            memory[n] = run_mode(args, n, unet, sched)
        else:
            cmd = [sys.executable, __file__, "--child", n, "--device", args.device, "--channels", *map(str, args.channels),
                   "--context-dim", str(args.context_dim), "--size", str(args.size), "--frames", str(args.frames),
                   "--steps", str(args.steps)] + (["--threads", str(args.threads)] if args.threads else [])
            memory[n] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    base_t = statistics.median(times["direct"])
    base_m = memory["direct"]["peak_bytes"]
    rows = []
    for n in names:
        t = statistics.median(times[n])
        row = {"mode": n, "seconds": round(t, 4), "time_ratio": round(t / base_t, 3),
               "peak_mb": round(memory[n]["peak_bytes"] / 2**20, 1),
               "peak_ratio": round(memory[n]["peak_bytes"] / base_m, 3)}
        if "growth_bytes" in memory[n]:
            row["growth_mb"] = round(memory[n]["growth_bytes"] / 2**20, 1)
        rows.append(row)
    targets = {"redilate-int": "<= 1.03x time", "ndcfg": f"<= {1 + 0.5 * TAU:.2f}x time",
               "disperse": "<= 1.10x time, <= 1.05x peak"}
    print(f"device={args.device} channels={args.channels} latent={args.size}^2 frames={args.frames} "
          f"steps={args.steps} tau={TAU} rounds={args.rounds} clock={args.clock}")
    print(f"{'mode':<14}{'s/trajectory':>14}{'time x':>9}{'peak MB':>10}{'peak x':>8}  target")
    for r in rows:
        print(f"{r['mode']:<14}{r['seconds']:>14.3f}{r['time_ratio']:>9.3f}{r['peak_mb']:>10.1f}{r['peak_ratio']:>8.3f}"
              f"  {targets.get(r['mode'], '')}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": {k: v for k, v in vars(args).items() if k != "child"}, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
