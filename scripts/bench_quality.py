#!/usr/bin/env python
"""Ground-truth quality benchmark on the embedded demo model (or another shapes model).

For every target size and method, N videos are generated with fixed seeds and fixed prompts (the
same seeds and prompts for every method) and scored with the ground-truth metrics of
:mod:`scalecrafter_video.metrics.ground_truth`; ground truth rendered at the target size is scored
too, as the ceiling of each metric. With the I3D weights available (``--fvd``), every cell also gets
FVD and KVD against that ground-truth set (8-frame videos are shown to I3D with every frame twice,
16 frames, the same rule for both sets); a second rendering of the same prompts with other scene
draws ("ground truth, new draw") gets them too, the floor that sampling noise alone gives at N
videos. Writes a markdown table and a JSON file (results, the exact
ScaleCrafter config of every cell, seeds, timings). Each finished cell (metrics and its videos) is
cached under ``<out>.cells/`` keyed by the model's weights and the settings, so an interrupted run
resumes where it stopped (a cell in progress keeps its finished batches in ``<key>.partial.npz``),
and runs over different sizes or methods with the same ``--out`` add up to one table. A cell asked
for with more videos than a cached one starts from the cached videos: video i's prompt and seed
depend only on i and ``--batch``, so the first videos of a larger cell are the smaller cell's.
A cached cell made before the ground-truth metrics gained a column is re-scored from its stored
videos.

Methods (cumulative from "ScaleCrafter"):
  direct        Direct-Inf: the model run unchanged at the target size
  attn-sf       attention entropy scaling only (Jin et al. 2023)
  bicubic       native size (training pixel count, target aspect) + bicubic upscale
  scalecrafter  re-dilation (automatic layer-wise schedule)
  ndcfg         + noise-damped CFG (needs guidance > 1 to have any effect)
  disperse      + dispersed convolution
  lr            + low-resolution guidance (re-noise the upsampled native sample, finish with ndcfg config)
  tuned         re-dilation with the schedule `scalecrafter-video tune` found for the size (the paper's
                noise-estimation search on ground-truth scenes; searched once per size and kept in
                <out>.tuned/HxW.yaml, which later runs reuse), no ndcfg: compare it with `scalecrafter`

With the I3D weights, FVD_c / KVD_c are I3D on --crops crops per clip at the model's training
resolution (the patch-FID rule: the demo's frames are far below I3D's 224), the same seeded
positions for generated and ground-truth clips.

    python scripts/bench_quality.py --videos 64                   # full grid
    python scripts/bench_quality.py --videos 8 --sizes 64x64      # a quick look
    python scripts/bench_quality.py --sizes 128x128 --methods direct,scalecrafter   # adds to the table
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scalecrafter_video import ScaleCrafterConfig, apply_scalecrafter, remove_scalecrafter  # noqa: E402
from scalecrafter_video.errors import ConfigError  # noqa: E402
from scalecrafter_video.atomic import atomic_path, write_text_atomic  # noqa: E402
from scalecrafter_video.demo.scenes import (  # noqa: E402
    all_prompts,
    render_batch,
    scene_from_prompt,
    to_uint8,
)
from scalecrafter_video.demo.showcase import load_demo_pipeline  # noqa: E402
from scalecrafter_video.demo.model import DEMO_MODEL_DIR  # noqa: E402
from scalecrafter_video.metrics.ground_truth import evaluate_video, summarize  # noqa: E402
from scalecrafter_video.engine import unet_levels  # noqa: E402
from scalecrafter_video.recipes.lr_guidance import (  # noqa: E402
    generate_native_upscaled,
    generate_with_lr_guidance,
)

METHODS = {
    "direct": "Direct-Inf",
    "attn-sf": "Attn-SF",
    "bicubic": "native + bicubic",
    "scalecrafter": "ScaleCrafter (re-dilation)",
    "ndcfg": "+ ndcfg",
    "disperse": "+ dispersion",
    "lr": "+ LR guidance",
    "tuned": "tuned schedule",
}
METRICS = [
    ("one_object_rate", "one-object frames", "%", True),
    ("objects_per_frame", "objects/frame", "", None),
    ("scale_error", "scale err", "", False),
    ("colour_accuracy", "colour acc", "%", True),
    ("colour_error", "colour err", "", False),
    ("shape_accuracy", "shape acc", "%", True),
    ("temporal_stability", "temporal stab.", "%", True),
    ("direction_accuracy", "direction acc", "%", True),
    ("axis_accuracy", "axis acc", "%", True),
    ("travel", "travel", "", None),
    ("fvd", "FVD", "", False),
    ("fvd_crops", "FVD_c", "", False),
    ("kvd", "KVD", "", False),
    ("kvd_crops", "KVD_c", "", False),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--model", help="model folder (default: the embedded models/shapes-t2v)")
    p.add_argument("--videos", type=int, default=64, help="videos per cell (default 64)")
    p.add_argument("--sizes", default="32x32,64x64,128x128,32x96,36x64",
                   help="HxW list (default: 1x, 4x, 16x, 3:1 and 16:9-class)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    p.add_argument("--steps", type=int, help="DDIM steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="CFG scale (default: the model's)")
    p.add_argument("--lr-fraction", type=float, default=0.5, help="LR guidance: fraction of steps re-run (default 0.5)")
    p.add_argument("--batch", type=int, default=8, help="videos per model call")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--fvd", choices=("auto", "on", "off"), default="auto",
                   help="FVD/KVD to ground truth: auto = when I3D weights are available offline (default)")
    p.add_argument("--i3d-weights", help="I3D weights (see `scalecrafter-video fvd --help`)")
    p.add_argument("--crops", type=int, default=4,
                   help="FVD_c: crops per clip at the training resolution (default 4; 0 = no FVD_c)")
    p.add_argument("--tune-scenes", type=int, default=8,
                   help="tuned: ground-truth scenes the search measures on (default 8)")
    p.add_argument("--tune-buckets", type=int, default=5, help="tuned: trajectory buckets (default 5)")
    p.add_argument("--out", default="outputs/bench_quality", help="output stem (.md and .json are added)")
    return p.parse_args(argv)


def parse_sizes(text):
    out = []
    for item in text.split(","):
        h, w = (int(v) for v in item.lower().split("x"))
        out.append((h, w))
    return out


def prompts_for(n: int, seed: int) -> list[str]:
    """A fixed, balanced prompt list: the 48 combinations in a seeded order, repeated."""
    combos = all_prompts()
    order = np.random.default_rng(seed).permutation(len(combos))
    return [combos[order[i % len(combos)]] for i in range(n)]


def model_fingerprint(folder: Path) -> str:
    """Short hash of the UNet and text-encoder weights and the scheduler config: cached cells of
    another (e.g. retrained) model are never reused."""
    h = hashlib.sha256()
    for rel in ("unet/diffusion_pytorch_model.safetensors", "text_encoder/model.safetensors",
                "scheduler/scheduler_config.json"):
        f = folder / rel
        h.update(rel.encode())
        h.update(f.read_bytes() if f.is_file() else b"-")
    return h.hexdigest()[:12]


def fvd_frames(videos: np.ndarray) -> np.ndarray:
    """I3D needs at least 9 frames: ``(N, F, H, W, 3)`` with every frame shown twice."""
    return np.repeat(videos, 2, axis=1) if videos.shape[1] < 9 else videos


def load_fvd_model(mode: str, weights):
    """The I3D network, or None (``auto`` without offline weights, or ``off``)."""
    if mode == "off":
        return None
    from scalecrafter_video.errors import ScaleCrafterError
    from scalecrafter_video.metrics.i3d_weights import load_i3d, resolve_i3d_weights

    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        path = resolve_i3d_weights(weights, download=(mode == "on"))
    except ScaleCrafterError as exc:
        if mode == "on":
            raise
        print(f"FVD/KVD skipped: {exc}")
        return None
    return load_i3d(weights=path, device=device, optimize=True)


def tuned_config(pipe, size, steps, tuned_dir: Path, scenes: int, buckets: int, seed: int) -> ScaleCrafterConfig:
    """The searched schedule of a size: read from ``tuned_dir/HxW.yaml``, searched (and saved) if absent.
    ndcfg is switched off so that the row compares with the automatic re-dilation row."""
    from scalecrafter_video.recipes.tune import load_references, measured_table, tune_schedule

    path = tuned_dir / f"{size[0]}x{size[1]}.yaml"
    if not path.is_file():
        tuned_dir.mkdir(parents=True, exist_ok=True)
        clips, prompts = load_references(f"scenes:{scenes}", *size, pipe.defaults["num_frames"], seed=seed)
        result = tune_schedule(pipe, clips, prompts, buckets=buckets, num_steps=steps, seed=seed,
                               state_path=path.with_suffix(".tune.json"), progress=False)
        tqdm.write(f"tuned {size[0]}x{size[1]}:\n{measured_table(result)}")
        result.config.to_yaml(path)  # written atomically
    return ScaleCrafterConfig.from_yaml(path).replace(ndcfg_tau=0.0, ndcfg_dilation={})


def configs_for(method, pipe, size, levels, tuned=None):
    """The ScaleCrafter config of a method at a size (None for the bicubic baseline); ``tuned``
    builds the searched one."""
    auto = lambda **kw: ScaleCrafterConfig.auto(pipe.train_size, size, num_levels=levels, vae_scale_factor=1, **kw)  # noqa: E731
    builders = {  # built lazily: dispersion refuses a size whose layers are all per-axis
        "direct": lambda: auto(method="direct"),
        "attn-sf": lambda: auto(method="attn-sf"),
        "bicubic": lambda: None,
        "scalecrafter": lambda: auto(ndcfg=False),
        "ndcfg": lambda: auto(ndcfg=True),
        "disperse": lambda: auto(ndcfg=True, disperse=True),
        "lr": lambda: auto(ndcfg=True),
        "tuned": tuned,
    }
    return builders[method]()


def generate(method, pipe, config, prompts, size, seed, call, lr_fraction):
    generator = torch.Generator("cpu").manual_seed(seed)
    h, w = size
    if method == "bicubic":
        return generate_native_upscaled(pipe, prompts, h, w, generator=generator, progress=False, **call)
    if method == "lr":
        return generate_with_lr_guidance(pipe, prompts, h, w, config, lr_fraction, generator=generator,
                                         progress=False, **call)
    apply_scalecrafter(pipe, config)
    try:
        return pipe(prompts, height=h, width=w, generator=generator, progress=False, **call)
    finally:
        remove_scalecrafter(pipe)


def fmt(value, unit):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{100 * value:.1f}%" if unit == "%" else f"{value:.3f}"


SUMMARY = ("one_object_rate", "shape_accuracy", "colour_accuracy", "direction_accuracy", "travel", "fvd",
           "fvd_crops", "kvd")
SUMMARY_FORMAT = {"fvd": ".0f", "fvd_crops": ".0f", "kvd": ".1f"}  # the rest as in the full table (``fmt``)


def summary_table(results: dict) -> list[str]:
    """The table to quote: one row per (size, method), the floor first, the best method per size in bold.

    Each value is printed once, here, so a document that quotes the benchmark copies these lines
    instead of re-typing numbers. Ties (equal as printed) are all bold; ``travel`` has no better side.
    """
    better = {k: b for k, _, _, b in METRICS}
    names = {k: label for k, label, _, _ in METRICS}
    units = {k: unit for k, _, unit, _ in METRICS}

    def show(key, value):
        shown = fmt(value, units[key])
        return format(value, SUMMARY_FORMAT[key]) if key in SUMMARY_FORMAT and shown != "-" else shown

    def size_order(key):  # squares by area, then the other aspect ratios
        h, w = map(int, key.split("x"))
        return h != w, h * w

    lines = ["| size | method | " + " | ".join(names[k] for k in SUMMARY) + " |", "|" + "---|" * (len(SUMMARY) + 2)]
    for size_key, cells in sorted(results.items(), key=lambda kv: size_order(kv[0])):
        rows = []
        for method, cell in sorted(cells.items(), key=lambda mc: mc[0] != REDRAW):  # the floor first
            if method == GROUND_TRUTH or cell.get("not_applicable"):
                continue
            name = "floor (ground truth redrawn)" if method == REDRAW else METHODS.get(method, method)
            stages = (cell.get("config") or {}).get("stages") if method == "tuned" else None
            if stages is not None and not any(st["dilation"] for st in stages):
                name += " (= Direct-Inf)"  # the search kept no dilation in any bucket
            rows.append((method, name, {k: show(k, cell["summary"].get(k)) for k in SUMMARY}, cell["summary"]))
        best = {}
        for k in SUMMARY:
            scored = [s[k] for m, _, shown, s in rows if m != REDRAW and shown[k] != "-"]  # no NaN: max() would keep it
            # bold only where it tells rows apart: some method scores worse than the best
            if better[k] is not None and len({show(k, v) for v in scored}) > 1:
                best[k] = show(k, max(scored) if better[k] else min(scored))
        for i, (method, name, shown, _) in enumerate(rows):
            values = [f"**{v}**" if method != REDRAW and v != "-" and v == best.get(k) else v for k, v in shown.items()]
            lines.append(f"| {size_key if i == 0 else ''} | {name} | " + " | ".join(values) + " |")
    return lines


def write_outputs(stem: Path, results: dict, meta: dict) -> None:
    lines = ["# Ground-truth quality benchmark", ""]
    lines.append(
        f"Model `{meta['model']}` (trained at {meta['train_size'][0]}x{meta['train_size'][1]}, weights "
        f"{meta['model_fingerprint']}), {meta['frames']} frames, DDIM {meta['steps']} steps, "
        f"guidance {meta['guidance']}, seeds {meta['seed']}+batch, the same prompts and seeds for every method "
        "(the first `videos` of one seeded list). "
        f"LR guidance re-runs the last {meta['lr_fraction']:.0%} of the steps. "
        "Higher is better for %, lower for errors; `ground truth` = the same prompts rendered at the target size; "
        "`ground truth, new draw` = the same prompts rendered again with other positions, sizes and speeds, whose "
        "distances to the ground truth are the floor that sampling noise alone puts under every row at this many videos."
    )
    lines += ["", "Summary (the floor row: two ground-truth draws of the same prompts; rows closer together than it "
              "are tied):", "", *summary_table(results), "", "Every column:", ""]
    header = "| size | method | videos | " + " | ".join(m[1] for m in METRICS) + " | s/video |"
    lines += [header, "|" + "---|" * (len(METRICS) + 4)]
    not_run = []
    for size_key, cells in results.items():
        for method, cell in cells.items():
            s = cell["summary"]
            if cell.get("not_applicable"):
                lines.append(f"| {size_key} | {METHODS.get(method, method)} | - | "
                             + " | ".join("n/a" for _ in METRICS) + " | - |")
                not_run.append(f"- {size_key}, {METHODS.get(method, method)}: not run: {cell['not_applicable']}")
                continue
            row = [size_key, METHODS.get(method, method), str(s.get("videos", "-"))]
            row += [fmt(s.get(k), unit) for k, _, unit, _ in METRICS]
            row.append(f"{cell.get('seconds_per_video', 0):.2f}" if method not in (GROUND_TRUTH, REDRAW) else "-")
            lines.append("| " + " | ".join(row) + " |")
    if not_run:
        lines += [""] + not_run
    lines += ["", "ScaleCrafter schedules used (automatic rule, `ScaleCrafterConfig.auto`; full configs of every "
              "cell in the JSON file next to this table):", ""]
    for size_key, cells in results.items():
        cell = next((cells[m] for m in ("disperse", "ndcfg", "scalecrafter", "lr") if (cells.get(m) or {}).get("config")),
                    None)
        if cell:
            c = cell["config"]
            extra = ""
            if c.get("ndcfg_dilation"):
                extra += f"; ndcfg {c['ndcfg_dilation']} (tau {c['ndcfg_tau']})"
            if c.get("disperse"):
                extra += f"; dispersion on {c['disperse']}"
            lines.append(f"- {size_key}: dilation {c['dilation']}, tau {c['dilate_tau']}, "
                         f"progressive {c['progressive']}{extra}")
    for size_key, cells in results.items():
        c = (cells.get("tuned") or {}).get("config")
        if c:
            stages = "; ".join(f"until {st['until']}: {st['dilation'] or 'none (Direct-Inf)'}" for st in c["stages"])
            lines.append(f"- {size_key}, tuned: {stages or 'Direct-Inf throughout'}")
    if meta.get("fvd"):
        lines += ["", f"FVD/KVD: {meta['fvd']}"]
    if meta.get("fvd_crops"):
        lines += ["", meta["fvd_crops"]]
    lines.append("")
    # atomic: runs over other sizes may share --out and rewrite these files at the same time
    write_text_atomic(stem.with_suffix(".md"), "\n".join(lines))
    write_text_atomic(stem.with_suffix(".json"), json.dumps({"meta": meta, "results": results}, indent=1) + "\n")


DISTANCES = ("fvd", "kvd", "fvd_crops", "kvd_crops")
GROUND_TRUTH, REDRAW = "ground truth", "ground truth, new draw"


def rescore_if_stale(cell: dict, videos: np.ndarray, prompts) -> bool:
    """Re-score a cached cell from its stored videos when the ground-truth metrics gained a column
    since it was made (its FVD / KVD stay: they do not depend on those metrics). True if changed."""
    wanted = [k for k, *_ in METRICS if k not in DISTANCES]
    if all(k in cell["summary"] for k in wanted):
        return False
    per_video = [evaluate_video(v, prompt=p) for v, p in zip(videos, prompts)]
    kept = {k: cell["summary"][k] for k in DISTANCES if k in cell["summary"]}
    cell["summary"] = {**summarize(per_video), **kept}
    if "per_video" in cell:
        cell["per_video"] = per_video
    return True


def settings_tag(fingerprint, videos, steps, guidance, seed) -> str:
    return f"m{fingerprint}-n{videos}-s{steps}-g{guidance}-seed{seed}"


def cell_key(size_key, method, tag, lr_fraction, tuned_dir: Path | None = None) -> str:
    """A cell's cache name; a tuned cell is keyed by its schedule file too (a new search, new cells)."""
    key = f"{size_key}-{method}-{tag}" + (f"-lr{lr_fraction}" if method == "lr" else "")
    if method == "tuned":
        schedule = (tuned_dir or Path("-")) / f"{size_key}.yaml"
        digest = hashlib.sha256(schedule.read_bytes()).hexdigest()[:8] if schedule.is_file() else "none"
        key += f"-t{digest}"
    return key


def parse_cell_name(stem: str, fingerprint: str) -> tuple[str, str, int] | None:
    """``(size_key, method, videos)`` of a cached cell's file name (see :func:`cell_key`), else None."""
    match = re.match(rf"^(\d+x\d+)-(.+)-m{fingerprint}-n(\d+)-", stem)  # methods may hold "-"
    return None if match is None else (match.group(1), match.group(2), int(match.group(3)))


def resume_point(cache: Path, key_for, videos: int, batch: int) -> tuple[np.ndarray | None, float]:
    """Videos already made for the cell ``key_for(videos)`` and the seconds they took: its own finished
    batches (``<key>.partial.npz``), else the largest cached cell ``key_for(n)`` with fewer videos, a
    whole number of batches of the same size (video i's prompt and seed depend only on i and the
    batch size, so those videos are this cell's first ones). ``(None, 0.0)`` when there is none."""
    partial = cache / f"{key_for(videos)}.partial.npz"
    if partial.is_file():
        with np.load(partial) as data:
            if int(data["batch"]) == batch:  # the key holds the video count: always fewer than wanted
                return data["videos"], float(data["seconds"])
    best = None
    for n in range((videos - 1) // batch * batch, 0, -batch):  # whole batches, fewer than wanted
        cell_file, video_file = cache / f"{key_for(n)}.json", cache / f"{key_for(n)}.npz"
        if cell_file.is_file() and video_file.is_file():
            cell = json.loads(cell_file.read_text())
            if cell.get("batch") == batch:  # cells that do not record their batch size are not reused
                best = (np.load(video_file)["videos"], cell["seconds_per_video"] * n)
                break
    return best if best is not None else (None, 0.0)


def save_partial(cache: Path, key: str, videos: list, seconds: float, batch: int) -> None:
    """The finished batches of a cell in progress, written atomically: an interrupted run resumes here."""
    with atomic_path(cache / f"{key}.partial.npz", suffix=".npz") as tmp:
        np.savez_compressed(tmp, videos=np.stack(videos), seconds=seconds, batch=batch)


def ground_truth_videos(prompts, size, frames, seed) -> np.ndarray:
    """The prompts rendered at the target size (the same scene draw for every method)."""
    rng = np.random.default_rng(seed)
    scenes = [scene_from_prompt(p, rng, frames, size[1] / size[0]) for p in prompts]
    return to_uint8(render_batch(scenes, *size, frames))


def redrawn_ground_truth(prompts, size, frames, seed) -> np.ndarray:
    """The same prompts rendered again with other positions, sizes and speeds (the FVD floor row)."""
    return ground_truth_videos(prompts, size, frames, seed + 1)


def collect_cells(cache: Path, fingerprint: str, steps, guidance, seed, lr_fraction, tuned_dir=None) -> dict:
    """Every cached cell of this model and these sampling settings, any number of videos (the
    largest wins), by size (by pixel count) and method: separate runs add up to one table."""
    found: dict = {}
    for f in cache.glob(f"*-m{fingerprint}-n*-s{steps}-g{guidance}-seed{seed}*.json"):
        parsed = parse_cell_name(f.stem, fingerprint)
        if parsed is None:
            continue
        size_key, method, videos = parsed
        tag = settings_tag(fingerprint, videos, steps, guidance, seed)
        if method not in METHODS or f.stem != cell_key(size_key, method, tag, lr_fraction, tuned_dir):
            continue
        best = found.setdefault(size_key, {}).get(method)
        if best is None or best[0] < videos:
            found[size_key][method] = (videos, tag)
    order = lambda k: (int(k.split("x")[0]) * int(k.split("x")[1]), k)  # noqa: E731
    out = {}
    for size_key in sorted(found, key=order):
        out[size_key] = {}
        for method in METHODS:
            if method in found[size_key]:
                tag = found[size_key][method][1]
                gt = cache / f"{cell_key(size_key, 'gt', tag, None)}.json"
                if gt.is_file() and GROUND_TRUTH not in out[size_key]:
                    out[size_key][GROUND_TRUTH] = json.loads(gt.read_text())
                    redraw = cache / f"{cell_key(size_key, 'gt-redraw', tag, None)}.json"
                    if redraw.is_file():
                        out[size_key][REDRAW] = json.loads(redraw.read_text())
                key = cell_key(size_key, method, tag, lr_fraction, tuned_dir)
                out[size_key][method] = json.loads((cache / f"{key}.json").read_text())
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        sys.exit(f"error: unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}")
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError:
        sys.exit(f"error: --sizes must look like 32x32,64x64 (HEIGHTxWIDTH), got {args.sizes!r}")
    pipe = load_demo_pipeline(args.model)
    fingerprint = model_fingerprint(Path(args.model) if args.model else DEMO_MODEL_DIR)
    levels = unet_levels(pipe.unet)
    steps = args.steps or pipe.defaults["num_inference_steps"]
    guidance = pipe.defaults["guidance_scale"] if args.guidance is None else args.guidance
    frames = pipe.defaults["num_frames"]
    call = dict(num_inference_steps=steps, guidance_scale=guidance, num_frames=frames)
    prompts = prompts_for(args.videos, args.seed)
    i3d = load_fvd_model(args.fvd, args.i3d_weights)
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    cache = Path(str(stem) + ".cells")
    cache.mkdir(exist_ok=True)
    tuned_dir = Path(str(stem) + ".tuned")
    tag = settings_tag(fingerprint, args.videos, steps, guidance, args.seed)
    meta = dict(model=str(args.model or "models/shapes-t2v"), model_fingerprint=fingerprint,
                train_size=list(pipe.train_size), videos=args.videos, frames=frames, steps=steps,
                guidance=guidance, seed=args.seed, lr_fraction=args.lr_fraction, batch=args.batch,
                threads=torch.get_num_threads(), prompts=prompts)
    if i3d is not None:
        meta["fvd"] = ("I3D (Kinetics-400) logits, every 8-frame video shown with each frame twice (16 frames), "
                       "TF1-legacy resize to 224x224, as many generated as ground-truth videos (the row's `videos`) "
                       "at the target size; with so few videos FVD is biased upwards, so compare rows, not papers")

    crop = min(pipe.train_size)
    if i3d is not None and args.crops:
        meta["fvd_crops"] = (f"FVD_c/KVD_c: the same I3D on {args.crops} crops of {crop}x{crop} (the training "
                             "resolution) per clip, each resized to 224x224 like a frame, at seeded positions "
                             "shared by generated and ground-truth clips")

    def score_fvd(cell, videos, gt):
        want_crops = bool(args.crops) and "fvd_crops" not in cell["summary"]
        if i3d is None or ("fvd" in cell["summary"] and not want_crops):
            return False
        from scalecrafter_video.metrics import compute_fvd

        r = compute_fvd(fvd_frames(gt), fvd_frames(videos), num_frames=16, model=i3d, progress=False,
                        crops=args.crops, crop_size=crop, seed=args.seed)
        cell["summary"]["fvd"], cell["summary"]["kvd"] = r.fvd, r.kvd
        if args.crops:
            cell["summary"]["fvd_crops"], cell["summary"]["kvd_crops"] = r.fvd_crops, r.kvd_crops
        return True

    bar = tqdm(total=len(sizes) * len(methods) * args.videos, desc="bench", unit="video", dynamic_ncols=True)
    for size in sizes:
        size_key = f"{size[0]}x{size[1]}"
        gt = ground_truth_videos(prompts, size, frames, args.seed)
        # The same prompts rendered again with other positions, sizes and speeds: its distances to
        # the ground truth are what two equally good sets of this size score (FVD's floor at n videos).
        for name, videos in (("gt", gt), ("gt-redraw", redrawn_ground_truth(prompts, size, frames, args.seed))):
            gt_file = cache / f"{cell_key(size_key, name, tag, None)}.json"
            gt_cell = json.loads(gt_file.read_text()) if gt_file.is_file() else {
                "summary": summarize([evaluate_video(v, prompt=p) for v, p in zip(videos, prompts)]), "config": None}
            stale = rescore_if_stale(gt_cell, videos, prompts)
            if score_fvd(gt_cell, videos, gt) or stale or not gt_file.is_file():  # FVD(X, X) = 0 checks the wiring
                write_text_atomic(gt_file, json.dumps(gt_cell) + "\n")
        for method in methods:
            try:
                config = configs_for(method, pipe, size, levels, tuned=lambda: tuned_config(
                    pipe, size, steps, tuned_dir, args.tune_scenes, args.tune_buckets, args.seed))
            except ConfigError as exc:  # e.g. dispersion at an aspect whose every factor is per-axis
                key = cell_key(size_key, method, tag, args.lr_fraction, tuned_dir)
                write_text_atomic(cache / f"{key}.json", json.dumps({"summary": {"videos": 0}, "config": None,
                                                                     "not_applicable": str(exc)}) + "\n")
                tqdm.write(f"{size_key} {METHODS[method]}: not run: {exc}")
                bar.update(args.videos)
                continue
            def key_for(n, size_key=size_key, method=method):  # this cell's cache name with n videos
                return cell_key(size_key, method, settings_tag(fingerprint, n, steps, guidance, args.seed),
                                args.lr_fraction, tuned_dir)

            key = key_for(args.videos)
            cell_file, video_file = cache / f"{key}.json", cache / f"{key}.npz"
            if cell_file.is_file() and video_file.is_file():
                cell = json.loads(cell_file.read_text())
                videos = np.load(video_file)["videos"]
                stale = rescore_if_stale(cell, videos, prompts)
                if score_fvd(cell, videos, gt) or stale:
                    write_text_atomic(cell_file, json.dumps(cell) + "\n")
                bar.update(args.videos)
                continue
            made, seconds = resume_point(cache, key_for, args.videos, args.batch)
            videos = list(made) if made is not None else []
            if videos:
                tqdm.write(f"{size_key} {METHODS[method]}: {len(videos)} of {args.videos} videos already made, "
                           "going on from there")
                bar.update(len(videos))
            for b0 in range(len(videos), args.videos, args.batch):
                batch_prompts = prompts[b0 : b0 + args.batch]
                started = time.perf_counter()
                out = generate(method, pipe, config, batch_prompts, size, args.seed + b0, call, args.lr_fraction)
                seconds += time.perf_counter() - started
                videos.extend(out)
                if len(videos) < args.videos:
                    save_partial(cache, key, videos, seconds, args.batch)
                bar.update(len(batch_prompts))
                bar.set_postfix(size=size_key, method=method)
            videos = np.stack(videos)
            per_video = [evaluate_video(v, prompt=p) for v, p in zip(videos, prompts)]
            cell = {"summary": summarize(per_video), "config": config.to_dict() if config else None,
                    "seconds_per_video": seconds / args.videos, "batch": args.batch, "per_video": per_video}
            score_fvd(cell, videos, gt)
            with atomic_path(video_file, suffix=".npz") as tmp:
                np.savez_compressed(tmp, videos=videos)
            write_text_atomic(cell_file, json.dumps(cell) + "\n")
            (cache / f"{key}.partial.npz").unlink(missing_ok=True)
            write_outputs(stem, collect_cells(cache, fingerprint, steps, guidance, args.seed, args.lr_fraction, tuned_dir), meta)
    bar.close()
    write_outputs(stem, collect_cells(cache, fingerprint, steps, guidance, args.seed, args.lr_fraction, tuned_dir), meta)
    print(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
