#!/usr/bin/env python
"""Where does a benchmark row's FVD come from? Mean against spread, and layout against detail.

Reads the cells a ``scripts/bench_quality.py`` run cached (``<out>.json`` and ``<out>.cells/``) for
one size and, for every method there plus the ground truth drawn anew, prints against the ground
truth:

* **FVD** split into its two terms (:func:`~scalecrafter_video.metrics.stats.frechet_terms`): the
  **mean** term (how far the set's average I3D feature is from the ground truth's) and the
  **spread** term (how differently the features scatter), with the set's own spread ``Tr(cov)``;
* **FVD low-passed**: the same after every generated frame is area-averaged down to the model's
  training pixel count and resized back (bicubic), which keeps the layout, object count and motion
  and drops everything finer than the model was trained to draw. A row that loses FVD to another
  but wins once both are low-passed loses it in the fine detail, not in what the scene shows.

I3D features come from the FVD feature cache, so the cells ``bench_quality.py --fvd on`` scored
cost nothing; each low-passed set is one new I3D pass (about 2.5 s per clip on one CPU thread).

    python scripts/diagnose_fvd.py --out outputs/bench_v2 --size 64x64
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_quality import (  # noqa: E402
    GROUND_TRUTH, METHODS, REDRAW, cell_key, fvd_frames, ground_truth_videos, parse_cell_name, prompts_for,
    redrawn_ground_truth, settings_tag,
)
from scalecrafter_video.errors import ScaleCrafterError, run_script  # noqa: E402
from scalecrafter_video.metrics.features import embed_video_sets  # noqa: E402
from scalecrafter_video.metrics.ground_truth import DEFAULT_THRESHOLD, estimate_background  # noqa: E402
from scalecrafter_video.metrics.i3d_weights import cache_root, load_i3d  # noqa: E402
from scalecrafter_video.metrics.stats import feature_statistics, frechet_terms  # noqa: E402


def low_pass(videos: np.ndarray, pixels: int) -> np.ndarray:
    """``(N, F, H, W, 3)`` uint8 area-averaged to about ``pixels`` pixels per frame (same aspect)
    and resized back with bicubic interpolation."""
    n, f, h, w, _ = videos.shape
    scale = (pixels / (h * w)) ** 0.5
    small = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = rearrange(torch.from_numpy(videos).float(), "n f h w c -> (n f) c h w")
    x = F.interpolate(F.interpolate(x, size=small, mode="area"), size=(h, w), mode="bicubic", align_corners=False)
    x = x.clamp(0, 255).round().to(torch.uint8)
    return rearrange(x, "(n f) c h w -> n f h w c", n=n).numpy()


def grain(videos: np.ndarray, margin: int = 2) -> tuple[float, float]:
    """Pixel-level grain of ``(N, F, H, W, 3)`` uint8 clips of one object on a plain background:
    the mean of ``|x - 3x3 box blur of x|`` (largest over RGB, frames in [0, 1]) inside the objects
    and in the background, each ``margin`` pixels away from the objects' edges.

    A flat fill scores 0, so this measures the texture a method leaves where the ground truth is
    flat: what FVD_c's native-resolution crops see and the resized FVD mostly does not. Object
    pixels follow the ground-truth metrics' rule (``find_objects``): RGB distance to the clip's
    background (``estimate_background``) above ``DEFAULT_THRESHOLD``.
    """
    n = len(videos)
    background = torch.from_numpy(np.stack([estimate_background(v) for v in videos]))  # (n, c)
    x = rearrange(torch.from_numpy(videos).float() / 255, "n f h w c -> (n f) c h w")
    away = x - rearrange(background, "n c -> n 1 c 1 1").expand(n, x.shape[0] // n, -1, 1, 1).flatten(0, 1)
    objects = (torch.linalg.vector_norm(away, dim=1, keepdim=True) > DEFAULT_THRESHOLD).float()  # (nf, 1, h, w)
    reach = dict(kernel_size=2 * margin + 1, stride=1, padding=margin)
    inside = (1 - F.max_pool2d(1 - objects, **reach)).bool()[:, 0]  # eroded: away from the edges
    outside = (F.max_pool2d(objects, **reach) == 0)[:, 0]  # dilated, then inverted
    blur = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)
    energy = (x - blur).abs().amax(dim=1)  # (nf, h, w)
    pick = lambda m: float(energy[m].mean()) if m.any() else float("nan")  # noqa: E731
    return pick(inside), pick(outside)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="outputs/bench_quality", help="the bench_quality.py output stem")
    p.add_argument("--size", required=True, help="HxW of the cells to read, e.g. 64x64")
    p.add_argument("--videos", type=int, help="videos per cell (default: the largest cached)")
    p.add_argument("--methods", help="subset of the cached methods (default: all)")
    p.add_argument("--low-pass", default="all", help="rows to low-pass too: all, none or a method list")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    stem = Path(args.out)
    meta_file = stem.with_suffix(".json")
    if not meta_file.is_file():
        raise ScaleCrafterError(f"{meta_file} not found; run scripts/bench_quality.py --out {stem} first")
    meta = json.loads(meta_file.read_text())["meta"]
    cache = Path(str(stem) + ".cells")
    h, w = (int(v) for v in args.size.lower().split("x"))
    size_key = f"{h}x{w}"
    counts = sorted({parse_cell_name(f.stem, meta["model_fingerprint"])[2]
                     for f in cache.glob(f"{size_key}-*-m{meta['model_fingerprint']}-n*.npz")
                     if not f.name.endswith(".partial.npz")})
    if not counts:
        raise ScaleCrafterError(f"no cached {size_key} cells of this model under {cache}")
    videos_n = args.videos or counts[-1]
    tag = settings_tag(meta["model_fingerprint"], videos_n, meta["steps"], meta["guidance"], meta["seed"])
    wanted = args.methods.split(",") if args.methods else list(METHODS)
    rows: dict[str, np.ndarray] = {}
    for method in wanted:
        key = cell_key(size_key, method, tag, meta["lr_fraction"], Path(str(stem) + ".tuned"))
        if (cache / f"{key}.npz").is_file():
            rows[METHODS[method]] = np.load(cache / f"{key}.npz")["videos"]
    if not rows:
        raise ScaleCrafterError(f"no cached {size_key} cells with {videos_n} videos for {', '.join(wanted)}")
    prompts = prompts_for(videos_n, meta["seed"])  # the cells' own prompts: the JSON holds the last run's
    gt = ground_truth_videos(prompts, (h, w), meta["frames"], meta["seed"])
    rows = {GROUND_TRUTH: gt, REDRAW: redrawn_ground_truth(prompts, (h, w), meta["frames"], meta["seed"]), **rows}
    pixels = meta["train_size"][0] * meta["train_size"][1]
    low = set(rows) if args.low_pass == "all" else set() if args.low_pass == "none" else {
        METHODS.get(m, m) for m in args.low_pass.split(",")}

    model = load_i3d(device=torch.device("cpu"))

    def features(v: np.ndarray, label: str) -> np.ndarray:
        (fs,) = embed_video_sets([fvd_frames(v)], model=model, labels=[label], num_frames=16,
                                 cache_dir=cache_root() / "fvd-features", workers=0)
        return fs.features

    real = features(gt, GROUND_TRUTH)
    lines = [f"# Where the FVD comes from at {size_key} ({videos_n} videos per set)", "",
             f"`python scripts/diagnose_fvd.py --out {stem} --size {size_key}`. FVD = mean term + spread term, "
             f"each against the ground truth; Tr(cov) is the set's own spread (ground truth: see its row). "
             f"Low-passed: every frame area-averaged to {pixels} pixels (the training size) and resized back, "
             "so layout, count and motion stay and finer detail goes. Grain: the mean of |x - 3x3 box blur| "
             "(largest over RGB, frames in [0, 1]) inside the objects and in the background, away from the "
             "edges; a flat fill scores 0 (`grain` in `scripts/diagnose_fvd.py`).", "",
             "| set | FVD | mean term | spread term | Tr(cov) | FVD low-passed | mean | spread | grain in objects "
             "| grain in background |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in rows.items():
        feats = features(v, name)
        mean, spread = frechet_terms(real, feats)
        trace = float(np.trace(feature_statistics(feats)[1]))
        cells = [f"{mean + spread:.1f}", f"{mean:.1f}", f"{spread:.1f}", f"{trace:.1f}"]
        if name in low:
            lm, ls = frechet_terms(real, features(low_pass(v, pixels), f"{name}, low-passed"))
            cells += [f"{lm + ls:.1f}", f"{lm:.1f}", f"{ls:.1f}"]
        else:
            cells += ["-", "-", "-"]
        cells += [f"{g:.4f}" for g in grain(v)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    target = Path(f"{stem}.fvd-terms-{size_key}.md")
    target.write_text("\n".join(lines) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    run_script(main)
