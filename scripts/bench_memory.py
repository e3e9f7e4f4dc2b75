"""Peak memory of VAE decoding vs frame size, untiled and with synced-GroupNorm tiles.

Each measurement runs in a fresh subprocess: an SD-layout AutoencoderKL (4 levels, 8x, random
weights, channels scaled down by --width-div so CPU runs stay short) decodes one frame; the peak
is the growth of the process's resident-set high-water mark (VmHWM) during the decode on CPU, or
``torch.cuda.max_memory_allocated`` on CUDA. Also reports the seconds and, where both ran, the
max |tiled - untiled| in [-1, 1] units.

    python scripts/bench_memory.py                     # CPU, 128..512 px
    python scripts/bench_memory.py --sizes 512,1024,2048 --device cuda --width-div 1
    python scripts/bench_memory.py --low-memory       # the one-tile-at-a-time (multi-pass) decode
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _hwm_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _worker(size: int, tile: int | None, device: str, width_div: int, out: str | None) -> dict:
    import torch
    from diffusers import AutoencoderKL

    torch.set_num_threads(1)
    torch.manual_seed(0)
    ch = tuple(c // width_div for c in (128, 256, 512, 512))
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=ch,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2, norm_num_groups=min(32, ch[0]),
    ).eval().to(device)
    lat = size // 8
    z = torch.nn.functional.interpolate(
        torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)), size=(lat, lat), mode="bicubic"
    ).to(device)
    from scalecrafter_video.tiled_decode import synced_tiled_decode

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = _hwm_mib()
    t0 = time.perf_counter()
    with torch.no_grad():
        low_memory = os.environ.get("BENCH_LOW_MEMORY") == "1"
        y = vae.decode(z).sample if tile is None else synced_tiled_decode(vae, z, tile, low_memory=low_memory)
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20 - base
    else:
        peak = _hwm_mib() - base
    seconds = time.perf_counter() - t0
    if out:
        torch.save(y.cpu(), out)
    return {"size": size, "tile": tile, "peak_mib": round(peak, 1), "seconds": round(seconds, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128,256,384,512", help="frame sides in pixels (multiples of 8)")
    ap.add_argument("--tile", type=int, default=16, help="latent tile size (default 16 = 128 px)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--width-div", type=int, default=4, help="divide SD's VAE channels by this (default 4)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON")
    ap.add_argument("--low-memory", action="store_true",
                    help="tiled decode with low_memory=True (one tile alive at a time, multi-pass statistics)")
    ap.add_argument("--_worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._worker:
        size, tile, out = int(args._worker[0]), args._worker[1], args._worker[2]
        row = _worker(size, None if tile == "none" else int(tile), args.device, int(args._worker[3]),
                      None if out == "none" else out)
        print(json.dumps(row))
        return 0

    import tempfile

    import torch

    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
               BENCH_LOW_MEMORY="1" if args.low_memory else "0")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            pair = {}
            for tile in (None, args.tile):
                out = os.path.join(tmp, f"{size}_{tile}.pt")
                res = subprocess.run(
                    [sys.executable, __file__, "--device", args.device, "--_worker", str(size), str(tile or "none"),
                     out, str(args.width_div)],
                    env=env, capture_output=True, text=True,
                )
                if res.returncode != 0:
                    print(res.stderr[-2000:], file=sys.stderr)
                    return 1
                row = json.loads(res.stdout.strip().splitlines()[-1])
                pair[tile] = torch.load(out)
                rows.append(row)
            row["max_abs_diff_vs_untiled"] = round(float((pair[None] - pair[args.tile]).abs().max()), 4)
            row["mean_abs_diff_vs_untiled"] = round(float((pair[None] - pair[args.tile]).abs().mean()), 4)
    print(f"VAE decode, 1 frame, {args.device}, SD-layout VAE with channels / {args.width_div}; peak = growth during the "
          f"decode; tiled: {'low_memory (multi-pass)' if args.low_memory else 'lockstep (one pass per tile)'}")
    print(f"{'size':>6} {'untiled MiB':>12} {'s':>6} {'tiled MiB':>10} {'s':>6} {'max|diff|':>10} {'mean|diff|':>11}")
    for plain, tiled in zip(rows[::2], rows[1::2]):
        print(f"{plain['size']:>6} {plain['peak_mib']:>12.1f} {plain['seconds']:>6.2f} {tiled['peak_mib']:>10.1f} "
              f"{tiled['seconds']:>6.2f} {tiled['max_abs_diff_vs_untiled']:>10.4f} {tiled['mean_abs_diff_vs_untiled']:>11.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
