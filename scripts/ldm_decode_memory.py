"""Peak CPU memory of decoding 16 video frames with the LDM AutoencoderKL, chunked vs all at once.

Each measurement runs in a fresh subprocess: it builds a tiny-width autoencoder (ch 32,
ch_mult [1, 1, 1, 1], 8x), allocates the (1, 4, 16, H/8, W/8) latents, then records the peak
resident set size (``ru_maxrss``) reached while decoding, minus the resident size just before.

    python scripts/ldm_decode_memory.py --sizes 256 512 1024 --chunks 1 16 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def measure(size: int, chunk: int, frames: int) -> dict:
    import resource

    import torch

    from scalecrafter_video.models.ldm_autoencoder import AutoencoderKL

    torch.set_num_threads(1)
    ddconfig = {
        "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 32,
        "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
    }
    vae = AutoencoderKL(ddconfig, embed_dim=4).eval()
    z = torch.randn(1, 4, frames, size // 8, size // 8)
    with torch.no_grad():
        vae.decode(z[:, :, 0, :4, :4])  # warm up kernels and allocator
    before = _rss_kib()
    started = time.perf_counter()
    video = vae.decode_video(z, chunk_size=chunk)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    output_mib = video.numel() * video.element_size() / 2**20
    return {
        "size": size, "frames": frames, "chunk": chunk, "peak_extra_mib": round((peak - before) / 1024, 1),
        "output_mib": round(output_mib, 1), "seconds": round(seconds, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--child", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(*args.child)))
        return 0
    rows = []
    for size in args.sizes:
        for chunk in args.chunks:
            cmd = [sys.executable, __file__, "--child", str(size), str(chunk), str(args.frames)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(f"{size:>5}^2  {args.frames} frames  chunk {chunk:>2}: peak +{row['peak_extra_mib']:>8.1f} MiB "
                  f"(decoded video itself {row['output_mib']:.1f} MiB), {row['seconds']} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
