"""``scalecrafter-video render``: batch jobs that resume, shard across processes and feed FVD runs.

One output per (prompt, seed, method), named ``{entry:05d}_{slug}_{method}_s{seed}.{mp4|npz}`` (or a
folder of pngs), in ``--out-dir``. ``manifest.jsonl`` there holds one JSON object per finished item.

No loss, no lies: per item, the output is written to a temporary name and renamed when complete,
then its ``.json`` sidecar (mp4/png; an npz holds its metadata inside), then its manifest line is
appended (one ``write``, fsynced). A write that fails (a full disk, any ``OSError``) records the
item in ``failures.jsonl`` and the job goes on; what that item had already written is removed again
(a sidecar that cannot be written takes its video with it). A killed job therefore leaves at most
stale temporary files (removed by the next run) and never a manifest line without its file.
Re-running the same command skips items whose manifest line is present and whose output still
decodes to the recorded frame count, and redoes the rest. A changed configuration (``config_hash``,
fps included) is refused unless ``--overwrite``. When ``manifest.jsonl`` or ``failures.jsonl``
cannot be written at the end, the run says so in one ``error:`` line and exits 1, and the per-rank
manifest shards stay for the next run to merge.

Scale-out uses torch.distributed: under ``torchrun --nproc_per_node N`` (multi-node too) every rank
plans the same items from the same on-disk state, a barrier follows, and rank ``r`` renders the
pending items ``r, r + N, r + 2N, ...`` (no overlap, no gap). Ranks append to their own
``manifest.rank{r}.jsonl``; rank 0 merges them into ``manifest.jsonl`` at the end (a later run
merges leftovers of a killed job too).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import METHODS
from .errors import ScaleCrafterError

__all__ = [
    "FORMATS", "Item", "PromptEntry", "config_hash", "item_done", "plan_items", "read_manifest",
    "read_prompts", "shard",
]

FORMATS = ("mp4", "png", "npz")
MANIFEST = "manifest.jsonl"
FAILURES = "failures.jsonl"
LOCK = "render.lock"
ENTRY_KEYS = {"prompt", "seed", "seeds", "height", "width", "frames", "negative_prompt"}


# --------------------------------------------------------------------------- prompt files
@dataclass(frozen=True)
class PromptEntry:
    """One prompt line: ``line`` is 1-based in the prompt file; ``None`` fields take the CLI's values."""

    line: int
    prompt: str
    seeds: tuple[int, ...] | None = None
    height: int | None = None
    width: int | None = None
    frames: int | None = None
    negative_prompt: str | None = None


def _positive_int(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{key!r} must be a positive integer, got {value!r}")
    return value


def _seed(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"seeds must be non-negative integers, got {value!r}")
    return value


def _parse_json_entry(obj, line: int) -> PromptEntry:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - ENTRY_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} (valid: {', '.join(sorted(ENTRY_KEYS))})")
    prompt = obj.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("'prompt' must be a non-empty string")
    if "seed" in obj and "seeds" in obj:
        raise ValueError("give 'seed' or 'seeds', not both")
    seeds = None
    if "seed" in obj:
        seeds = (_seed(obj["seed"]),)
    elif "seeds" in obj:
        if not isinstance(obj["seeds"], list) or not obj["seeds"]:
            raise ValueError("'seeds' must be a non-empty list of integers")
        seeds = tuple(_seed(s) for s in obj["seeds"])
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"'seeds' has duplicates: {list(seeds)}")
    sizes = {k: _positive_int(obj[k], k) for k in ("height", "width", "frames") if obj.get(k) is not None}
    negative = obj.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise ValueError("'negative_prompt' must be a string")
    return PromptEntry(line, prompt.strip(), seeds, negative_prompt=negative, **sizes)


def read_prompts(path) -> list[PromptEntry]:
    """Read a prompt file: plain text (one prompt per line; blank lines and ``#`` comments skipped) or,
    for ``.jsonl``/``.ndjson`` files, one JSON object per line with ``prompt`` and optional ``seed`` or
    ``seeds``, ``height``, ``width``, ``frames``, ``negative_prompt``.

    Every bad line is reported, with its line number, in one :class:`ScaleCrafterError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ScaleCrafterError(f"prompt file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ScaleCrafterError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    entries, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not is_jsonl:
            entries.append(PromptEntry(number, line))
            continue
        try:
            entries.append(_parse_json_entry(json.loads(line), number))
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: invalid JSON ({exc.msg} at column {exc.colno})")
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ScaleCrafterError(f"{path}: {len(problems)} bad line(s): {shown}")
    if not entries:
        raise ScaleCrafterError(f"{path}: no prompts")
    return entries


# --------------------------------------------------------------------------- planning
@dataclass
class Item:
    """One output to render. ``name`` is the deterministic file name (without the format suffix)."""

    entry: int  # 0-based index of the prompt entry
    line: int
    prompt: str
    seed: int
    method: str
    height: int | None
    width: int | None
    frames: int | None
    negative_prompt: str | None
    name: str = ""
    config_hash: str = ""
    error: str | None = None  # a planning error (e.g. a size the model cannot take): recorded as failed
    extra: dict = field(default_factory=dict)


def slug(text: str, length: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (s[:length].rstrip("-")) or "prompt"


def plan_items(entries: list[PromptEntry], methods: list[str], seeds: list[int], defaults: dict) -> list[Item]:
    """Every (prompt entry, method, seed) in a fixed order; sizes fall back to ``defaults``
    (keys ``height``, ``width``, ``frames``, ``negative_prompt``)."""
    items = []
    for k, e in enumerate(entries):
        for method in methods:
            for seed in e.seeds or seeds:
                items.append(Item(
                    entry=k, line=e.line, prompt=e.prompt, seed=seed, method=method,
                    height=e.height or defaults.get("height"), width=e.width or defaults.get("width"),
                    frames=e.frames or defaults.get("frames"),
                    negative_prompt=e.negative_prompt if e.negative_prompt is not None else defaults.get("negative_prompt"),
                    name=f"{k:05d}_{slug(e.prompt)}_{method}_s{seed}",
                ))
    return items


def shard(items: list, rank: int, world: int) -> list:
    """Items ``rank, rank + world, ...``: over all ranks, every item exactly once."""
    return items[rank::world]


def config_hash(config_dict: dict, **fields) -> str:
    """Stable sha256 (16 hex digits) of the resolved config plus whatever else changes the pixels."""
    blob = json.dumps({"config": config_dict, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- manifest
def _manifest_files(out_dir: Path) -> list[Path]:
    shards = sorted(out_dir.glob("manifest.rank*.jsonl"), key=lambda p: p.name)
    main = out_dir / MANIFEST
    return ([main] if main.is_file() else []) + shards


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill: its item is simply redone
        if isinstance(row, dict) and isinstance(row.get("path"), str):
            rows.append(row)
    return rows


def read_manifest(out_dir) -> dict[str, dict]:
    """``path -> entry`` from ``manifest.jsonl`` and any rank shards (later lines win)."""
    out: dict[str, dict] = {}
    for f in _manifest_files(Path(out_dir)):
        for row in _read_jsonl(f):
            out[row["path"]] = row
    return out


def _append_line(path: Path, entry: dict) -> None:
    """Append one JSON line; when the write or the fsync fails (a full disk), the file is cut back to
    its previous length so that no torn line stays for the next append to be glued onto."""
    data = (json.dumps(entry, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass  # the reader drops a torn line; the next run rewrites the manifest clean
            raise
    finally:
        os.close(fd)


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` under a hidden temporary name, fsync, rename; the temporary never stays behind."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def merge_manifests(out_dir: Path, order: list[str] | None = None) -> int:
    """Fold rank shards into ``manifest.jsonl`` (one line per path, in plan order, then by name)."""
    entries = read_manifest(out_dir)
    rank = {p: i for i, p in enumerate(order or [])}
    rows = sorted(entries.values(), key=lambda r: (rank.get(r["path"], len(rank)), r["path"]))
    _atomic_write_text(out_dir / MANIFEST, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    for f in out_dir.glob("manifest.rank*.jsonl"):
        f.unlink(missing_ok=True)
    return len(rows)


def item_path(item: Item, fmt: str) -> str:
    return item.name if fmt == "png" else f"{item.name}.{fmt}"


def _npz_frame_count(path: Path) -> int:
    """First dimension of the ``frames`` array of an npz, read from the array header only (the zip's
    central directory sits at the end of the file, so a truncated file fails here)."""
    import zipfile

    with zipfile.ZipFile(path) as zf, zf.open("frames.npy") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(fh)
    return int(shape[0]) if shape else 0


def _frame_count(p: Path) -> int:
    """Frames of a finished output: frame files of a png folder, the npz header, or a full decode of
    a video (:func:`~scalecrafter_video.video_io.read_video`). Raises when the output cannot be read."""
    if p.is_dir():
        return sum(1 for f in p.glob("frame_*.png") if f.is_file() and f.stat().st_size > 0)
    if p.suffix == ".npz":
        return _npz_frame_count(p)
    from .video_io import read_video

    return int(read_video(p).shape[0])


def item_done(out_dir: Path, rel: str, entry: dict | None) -> bool:
    """Finished = a manifest entry and its output on disk, still complete: a png folder with the
    recorded number of ``frame_*.png`` files, an npz whose ``frames`` array has the recorded length,
    a video that decodes to the recorded frame count (any decode error: not done). An entry without a
    frame count (not written by this tool) only needs a non-empty file."""
    if entry is None:
        return False
    p = out_dir / rel
    try:
        expected = entry.get("frames")
        if isinstance(expected, bool) or not isinstance(expected, int):
            return p.is_file() and p.stat().st_size > 0
        if Path(rel).suffix:  # mp4 / npz (and gif / webp): a non-empty regular file
            if not p.is_file() or p.stat().st_size == 0:
                return False
        elif not p.is_dir():  # png: a folder of frames
            return False
        return _frame_count(p) == expected
    except Exception:  # noqa: BLE001 - truncated, corrupt, unreadable: redo it
        return False


# Temporary names of a killed job: ours (".{name}.{pid}.tmp", ".{name}.{pid}.tmp.npz", the out-dir
# probe ".scalecrafter-probe.XXXXXXXX.tmp") and export.write_video's (".{stem}.XXXXXXXX.tmp.mp4"
# files, ".{name}.XXXXXXXX.tmp" frame folders, ".{name}.XXXXXXXX.old" previous outputs being swapped out).
_TEMPORARY = re.compile(r"\..+\.(?:[A-Za-z0-9_]{8}\.(?:tmp(?:\.[A-Za-z0-9]+)?|old)|\d+\.tmp(?:\.npz)?)")


def _stale_temporaries(out_dir: Path) -> list[Path]:
    """Entries of ``out_dir`` named like our temporaries; folders only when they hold nothing but
    ``frame_NNNNN.png`` files (a frame folder being written or swapped out), never symbolic links."""
    from .export import is_own_output

    return [p for p in out_dir.iterdir() if _TEMPORARY.fullmatch(p.name) and not p.is_symlink()
            and (not p.is_dir() or is_own_output(p))]


def _sweep_temporaries(out_dir: Path) -> None:
    for stale in _stale_temporaries(out_dir):
        try:
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink(missing_ok=True)
        except OSError:
            pass  # best effort: a leftover we cannot remove does not stop the job


def _remove_output(path: Path) -> None:
    """Remove an output this run has just written (a file, or a png folder)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass


# --------------------------------------------------------------------------- distributed
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised: bool = False

    def barrier(self) -> None:
        if self.initialised:
            import torch.distributed as td

            td.barrier()

    def gather(self, obj) -> list:
        if not self.initialised:
            return [obj]
        import torch.distributed as td

        out = [None] * self.world
        td.all_gather_object(out, obj)
        return out

    def close(self) -> None:
        if self.initialised:
            import torch.distributed as td

            td.destroy_process_group()
            self.initialised = False


def init_distributed(device_name: str) -> Dist:
    """Ranks from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); gloo on CPU, nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as td

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() and not device_name.startswith("cpu")
    if cuda:
        torch.cuda.set_device(local)
    if not td.is_initialized():
        td.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local, initialised=True)


# --------------------------------------------------------------------------- rendering one item
def _render_frames(pipe, config, item: Item, call: dict, chunk_size: int, tile_size: int | None) -> np.ndarray:
    """One item through the pipeline protocol: every pipeline takes ``chunk_size`` / ``tile_size``
    (or refuses them with a clear error) and stops on non-finite latents."""
    from .commands import render

    kwargs = dict(call, negative_prompt=item.negative_prompt, height=item.height, width=item.width,
                  num_frames=item.frames, progress=False, chunk_size=chunk_size)
    if tile_size is not None:
        kwargs["tile_size"] = tile_size
    return render(pipe, config, item.prompt, item.seed, **kwargs)


def _write_output(frames: np.ndarray, out_dir: Path, rel: str, fmt: str, fps: float, meta: dict) -> None:
    from .export import write_video

    target = out_dir / rel
    if fmt == "npz":
        tmp = out_dir / f".{rel}.{os.getpid()}.tmp.npz"
        try:
            np.savez_compressed(tmp, frames=frames, meta=np.array(json.dumps(meta, sort_keys=True)))
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    else:
        write_video(frames, target, fps=fps, overwrite=True)  # only our own previous output is replaced


def _release_cached_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- the command
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "render",
        help="batch-render a prompt file (resumable; shards across torchrun ranks)",
        description="Render every (prompt, seed, method) of a prompt file into --out-dir with a manifest.jsonl. "
        "Re-running the same command resumes; under torchrun the items are sharded across ranks.",
    )
    p.add_argument("--prompts", required=True, help="text file (one prompt a line) or .jsonl (prompt, seed/seeds, height, width, frames)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--model", required=True, help="local diffusers folder, or an LVDM/VideoCrafter .ckpt")
    p.add_argument("--model-config", help="YAML config of a .ckpt model (LVDM / VideoCrafter)")
    p.add_argument("--clip", help="local CLIP text-encoder folder (LVDM)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--config", help="ScaleCrafter schedule YAML, or 'auto' (the default)")
    src.add_argument("--preset", help="a shipped schedule, e.g. sd2.1/2048x2048")
    p.add_argument("--method", help=f"comma list of methods, one output each ({', '.join(METHODS)}); default: the schedule's")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", help="comma list of seeds for every prompt, e.g. 0,1,2")
    seeds.add_argument("--num-per-prompt", type=int, help="K outputs per prompt, seeds 0..K-1 (default 1)")
    p.add_argument("--height", type=int, help="pixels (default: the model's native height)")
    p.add_argument("--width", type=int, help="pixels (default: the model's native width)")
    p.add_argument("--frames", type=int, help="frames per video (default: the model's)")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--steps", type=int, help="denoising steps (default: the model's)")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    p.add_argument("--eta", type=float, help="DDIM eta")
    p.add_argument("--fps", type=float, help="frames per second of written videos")
    p.add_argument("--format", choices=FORMATS, default="mp4", help="mp4 (default), png (a folder of frames), npz (lossless uint8)")
    p.add_argument("--chunk-size", type=int, default=8, help="frames per VAE decode call (default 8)")
    p.add_argument("--tile-size", type=int, default=None, help="latent tile size for synced-GroupNorm tiled decoding (default: off)")
    p.add_argument("--device", default="auto", help="auto (cuda:LOCAL_RANK when available), cpu, cuda, ...")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument("--overwrite", action="store_true", help="re-render items finished with a different configuration")
    from .commands import add_model_arguments

    add_model_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _parse_methods(text: str | None) -> list[str | None]:
    if not text:
        return [None]
    methods = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ScaleCrafterError(f"--method: unknown method(s) {', '.join(bad) or repr(text)}; choose from {', '.join(METHODS)}")
    if len(set(methods)) != len(methods):
        raise ScaleCrafterError(f"--method lists a method twice: {text}")
    return methods


def _parse_seeds(args) -> list[int]:
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            raise ScaleCrafterError(f"--seeds must be a comma list of integers, got {args.seeds!r}") from None
        if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
            raise ScaleCrafterError(f"--seeds must be distinct non-negative integers, got {args.seeds!r}")
        return seeds
    k = 1 if args.num_per_prompt is None else args.num_per_prompt
    if k <= 0:
        raise ScaleCrafterError(f"--num-per-prompt must be positive, got {k}")
    return list(range(k))


def _check_args(args) -> None:
    for key in ("height", "width", "frames", "steps", "chunk_size"):
        v = getattr(args, key)
        if v is not None and v <= 0:
            raise ScaleCrafterError(f"--{key.replace('_', '-')} must be positive, got {v}")
    if args.tile_size is not None and args.tile_size < 2:
        raise ScaleCrafterError(f"--tile-size must be at least 2 (latent pixels), got {args.tile_size}")
    if args.fps is not None and args.fps <= 0:
        raise ScaleCrafterError(f"--fps must be positive, got {args.fps}")


def _resolve_device(name: str, dist: Dist):
    import torch

    from .commands import resolve_device

    if name == "auto" and torch.cuda.is_available():
        return torch.device("cuda", dist.local_rank)
    return resolve_device(name)


def run(args: argparse.Namespace) -> int:
    from .commands import explicit_config

    _check_args(args)
    methods = _parse_methods(args.method)
    seeds = _parse_seeds(args)
    explicit = {}
    for m in methods:  # schedules are checked before any model is loaded
        explicit[m] = explicit_config(_with_method(args, m))
    entries = read_prompts(args.prompts)
    out_dir = Path(args.out_dir)
    _check_out_dir(out_dir)  # before any model is loaded

    dist = init_distributed(args.device)
    try:
        return _run(args, dist, methods, seeds, explicit, entries, out_dir)
    finally:
        dist.close()


def _check_out_dir(out_dir: Path) -> None:
    """Refuse an ``--out-dir`` that is a file, lies under a file, or cannot be written (permissions, a
    read-only file system): tried with a probe file in the folder, or in its nearest existing parent."""
    import tempfile

    if not str(out_dir).strip():
        raise ScaleCrafterError("--out-dir must name a folder")
    ancestor = out_dir
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if os.path.islink(ancestor) and not ancestor.exists():
        raise ScaleCrafterError(f"--out-dir {out_dir} cannot be created: {ancestor} is a broken symbolic link")
    if not ancestor.is_dir():
        if ancestor == out_dir:
            raise ScaleCrafterError(f"--out-dir {out_dir} is a file, not a folder")
        raise ScaleCrafterError(f"--out-dir {out_dir} cannot be created: {ancestor} is a file")
    where = "" if ancestor == out_dir else f" ({ancestor} is where it would be created)"
    try:  # a real write: mode bits, ACLs, read-only mounts and root all give the true answer
        fd, probe = tempfile.mkstemp(prefix=".scalecrafter-probe.", suffix=".tmp", dir=ancestor)
    except OSError as exc:
        raise ScaleCrafterError(f"--out-dir {out_dir} is not writable{where}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass


def _with_method(args, method):
    a = copy.copy(args)
    a.method = method
    return a


def _run(args, dist: Dist, methods, seeds, explicit: dict, entries: list[PromptEntry], out_dir: Path) -> int:
    from tqdm.auto import tqdm

    from .commands import build_config, model_options, resolve_dtype
    from .metrics.i3d import sha256_file
    from .model_inputs import check_model_inputs, family_name, load_image
    from .pipelines import load_pipeline

    started = time.perf_counter()
    device = _resolve_device(args.device, dist)
    dtype = resolve_dtype(args.dtype, device)
    image = load_image(args.image) if args.image is not None else None
    options = model_options(args)
    pipe = load_pipeline(args.model, device=device, dtype=dtype, model_config=args.model_config, clip_path=args.clip,
                         motion_adapter=args.motion_adapter)
    check_model_inputs(pipe, image, options)
    if args.tile_size is not None and getattr(pipe, "vae", None) is None:
        raise ScaleCrafterError(f"--tile-size: {args.model} has no VAE (pixel-space model or image pipeline); drop the option")
    defaults = {
        "height": args.height or pipe.train_size[0], "width": args.width or pipe.train_size[1],
        "frames": args.frames or pipe.defaults.get("num_frames"), "negative_prompt": args.negative_prompt,
    }
    steps = args.steps or pipe.defaults.get("num_inference_steps")
    guidance = pipe.defaults.get("guidance_scale") if args.guidance is None else args.guidance
    eta = pipe.defaults.get("eta", 0.0) if args.eta is None else args.eta
    fps = args.fps or pipe.defaults.get("fps", 8)
    call = dict(num_inference_steps=steps, guidance_scale=guidance, eta=eta, **options)
    if image is not None:
        call["image"] = image
    image_hash = sha256_file(Path(args.image)) if args.image is not None else None
    meta = dict(family=family_name(pipe), image=args.image, image_sha256=image_hash, options=options,
                motion_adapter=args.motion_adapter, dtype=str(dtype), device=str(device))

    # ---- plan: resolved config and hash per (method, size); a size the model refuses fails its items only
    items = plan_items(entries, methods, seeds, defaults)
    configs: dict[tuple, object] = {}
    for it in items:
        key = (it.method, it.height, it.width)
        if key not in configs:
            try:
                pipe.check_size(it.height, it.width)
                cfg = build_config(_with_method(args, it.method), pipe, it.height, it.width,
                                   copy.deepcopy(explicit[it.method]))
                configs[key] = cfg
            except ScaleCrafterError as exc:
                configs[key] = exc
        cfg = configs[key]
        it.extra["config_key"] = key
        if isinstance(cfg, Exception):
            it.error = str(cfg)
            continue
        it.method = cfg.method  # the schedule's own method when --method was not given
        it.name = f"{it.entry:05d}_{slug(it.prompt)}_{cfg.method}_s{it.seed}"
        it.config_hash = config_hash(
            cfg.to_dict(), method=cfg.method, model=str(Path(args.model).resolve()), height=it.height,
            width=it.width, frames=it.frames, steps=steps, guidance=guidance, eta=eta,
            negative_prompt=it.negative_prompt, dtype=str(dtype), tile_size=args.tile_size, fps=fps,
            image=image_hash, options=options, motion_adapter=args.motion_adapter, family=family_name(pipe),
        )
    for it in items:
        if it.error is not None and not it.name:
            it.name = f"{it.entry:05d}_{slug(it.prompt)}_{it.method or 'auto'}_s{it.seed}"
    names = [item_path(it, args.format) for it in items]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[0]
        raise ScaleCrafterError(f"two planned items share the output name {dup} (a seed listed twice for one prompt?)")

    # ---- state on disk, read by every rank before any rank writes
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScaleCrafterError(f"--out-dir {out_dir} cannot be created: {exc.strerror or exc}") from None
    lock = _lock(out_dir) if dist.rank == 0 else None  # one job per folder (released by the OS on a kill)
    try:
        return _render_all(args, dist, items, configs, pipe, call, out_dir, fps, steps, guidance, eta, started, tqdm, meta)
    finally:
        if lock is not None:
            try:
                (out_dir / LOCK).unlink(missing_ok=True)
            except OSError:
                pass
            os.close(lock)


def _lock(out_dir: Path) -> int:
    import fcntl

    try:
        fd = os.open(out_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ScaleCrafterError(f"cannot create {out_dir / LOCK}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ScaleCrafterError(f"another render job is writing to {out_dir} ({out_dir / LOCK} is locked)") from None
    return fd


def _render_all(args, dist, items, configs, pipe, call, out_dir, fps, steps, guidance, eta, started, tqdm,
                meta) -> int:
    manifest = read_manifest(out_dir)
    conflicts = [it for it in items if it.error is None and (e := manifest.get(item_path(it, args.format)))
                 and e.get("config_hash") != it.config_hash]
    if conflicts and not args.overwrite:
        first = conflicts[0]
        old = manifest[item_path(first, args.format)].get("config_hash")
        raise ScaleCrafterError(
            f"{len(conflicts)} finished item(s) in {out_dir} were rendered with a different configuration "
            f"(e.g. {item_path(first, args.format)}: config_hash {old} != {first.config_hash}); "
            "pass --overwrite to re-render them, or use another --out-dir"
        )
    # Finished items are checked (decoded) once, spread over the ranks; the gather is the barrier
    # after which every rank knows the same state and rank 0 may write.
    candidates = [k for k, it in enumerate(items) if it.error is None
                  and (e := manifest.get(item_path(it, args.format))) and e.get("config_hash") == it.config_hash]
    checked = {k: item_done(out_dir, item_path(items[k], args.format), manifest[item_path(items[k], args.format)])
               for k in shard(candidates, dist.rank, dist.world)}
    done_set = {k for part in dist.gather(checked) for k, ok in part.items() if ok}
    pending = [it for k, it in enumerate(items) if k not in done_set]
    skipped = len(done_set)
    order = [item_path(it, args.format) for it in items]
    problem = None
    if dist.rank == 0:
        _sweep_temporaries(out_dir)
        # Rewrite the manifest clean (torn last line of a killed job dropped, shards folded in) so that
        # this run's appends start on a fresh line.
        try:
            merge_manifests(out_dir, order=order)
        except OSError as exc:
            problem = f"could not write {MANIFEST}: {_why(exc)}"
    if any(dist.gather(problem)):
        if dist.rank == 0:
            print(f"error: {problem}", file=sys.stderr)
        return 1

    from .commands import _versions

    versions = _versions()
    mine = shard(pending, dist.rank, dist.world)
    shard_file = out_dir / (MANIFEST if dist.world == 1 else f"manifest.rank{dist.rank}.jsonl")
    done, failures = 0, []
    bar = tqdm(total=len(mine), desc=f"render rank {dist.rank}/{dist.world}" if dist.world > 1 else "render",
               unit="video", position=dist.local_rank, disable=args.no_progress, dynamic_ncols=True, file=sys.stderr)
    for it in mine:
        rel = item_path(it, args.format)
        t0 = time.perf_counter()
        try:
            if it.error is not None:
                raise ScaleCrafterError(it.error)
            cfg = configs[it.extra["config_key"]]
            frames = _render_frames(pipe, cfg, it, call, args.chunk_size, args.tile_size)
            seconds = round(time.perf_counter() - t0, 3)
            entry = {
                "path": rel, "prompt": it.prompt, "seed": it.seed, "model": str(args.model),
                "config_hash": it.config_hash, "method": it.method, "height": int(frames.shape[1]),
                "width": int(frames.shape[2]), "frames": int(frames.shape[0]), "seconds": seconds,
                "line": it.line, "negative_prompt": it.negative_prompt, "fps": fps, "format": args.format,
            }
            sidecar = dict(entry, config=cfg.to_dict(), steps=steps, guidance=guidance, eta=eta,
                           tile_size=args.tile_size, rank=dist.rank, versions=versions, **meta)
            _write_item(frames, out_dir, rel, args.format, fps, sidecar, entry, shard_file,
                        recorded=rel in manifest)
            done += 1
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a failing item is recorded and the job goes on
            if isinstance(exc, ScaleCrafterError):
                reason = str(exc)
            elif isinstance(exc, OSError) and exc.strerror:  # e.g. "OSError: No space left on device"
                reason = f"{type(exc).__name__}: {exc.strerror}"
            else:
                reason = f"{type(exc).__name__}: {exc}"
            _release_cached_memory()  # after an out-of-memory error the next item gets a clean slate
            failures.append({"path": rel, "prompt": it.prompt, "seed": it.seed, "method": it.method,
                             "line": it.line, "reason": reason.splitlines()[0] if reason else type(exc).__name__})
            bar.write(f"failed: {rel}: {failures[-1]['reason']}")
        bar.set_postfix(done=done, failed=len(failures), refresh=False)
        bar.update(1)
    bar.close()

    # ---- merge and report
    results = dist.gather({"done": done, "failures": failures})
    total_done = sum(r["done"] for r in results)
    all_failures = [f for r in results for f in r["failures"]]
    problems = []
    if dist.rank == 0:
        try:  # on failure the shards stay where they are, for the next run to merge
            merge_manifests(out_dir, order=order)
        except OSError as exc:
            problems.append(f"could not write {MANIFEST}: {_why(exc)}")
        failure_file = out_dir / FAILURES
        try:
            if all_failures:
                _atomic_write_text(failure_file, "".join(json.dumps(f, sort_keys=True) + "\n" for f in all_failures))
            else:
                failure_file.unlink(missing_ok=True)
        except OSError as exc:
            problems.append(f"could not {'write' if all_failures else 'remove the old'} {FAILURES}: {_why(exc)}")
        reasons = "; ".join(f"{f['path']}: {f['reason']}" for f in all_failures[:3])
        more = f"; and {len(all_failures) - 3} more (see {failure_file})" if len(all_failures) > 3 else ""
        print(
            f"render: {len(items)} planned, {total_done} done, {skipped} skipped, {len(all_failures)} failed"
            + (f" ({reasons}{more})" if all_failures else "")
            + f" in {time.perf_counter() - started:.1f} s on {dist.world} process(es); manifest: {out_dir / MANIFEST}"
        )
        if problems:
            print(f"error: {'; '.join(problems)}", file=sys.stderr, flush=True)
    dist.barrier()
    return 1 if all_failures or problems else 0


def _why(exc: BaseException) -> str:
    """``No space left on device`` rather than ``[Errno 28] No space left on device: '/x/.y.tmp'``."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


def _write_item(frames, out_dir: Path, rel: str, fmt: str, fps: float, sidecar: dict, entry: dict,
                shard_file: Path, recorded: bool) -> None:
    """Output, then sidecar, then manifest line. When the sidecar or the manifest line cannot be
    written, the output (and the sidecar) are removed again, so a failed item leaves nothing behind."""
    target = out_dir / rel
    if fmt != "npz" and recorded and target.is_file() and not target.is_symlink():
        # A damaged video of ours (its manifest line says so; it failed the resume check): a file
        # truncated past recognition would otherwise be refused by write_video's own-output check.
        from .export import is_own_output

        if not is_own_output(target):
            target.unlink()
    _write_output(frames, out_dir, rel, fmt, fps, sidecar)
    side = out_dir / f"{rel}.json"
    try:
        if fmt != "npz":  # an npz holds its metadata inside
            _atomic_write_text(side, json.dumps(sidecar, indent=2, sort_keys=True))
        _append_line(shard_file, entry)  # only after the output and its sidecar are complete
    except Exception:
        _remove_output(target)
        if fmt != "npz":
            try:
                side.unlink(missing_ok=True)
            except OSError:
                pass
        raise
