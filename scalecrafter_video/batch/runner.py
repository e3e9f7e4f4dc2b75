"""Batch rendering: every (prompt, seed, method) of a prompt file into one folder, resumable and
sharded across torchrun ranks.

One output per (prompt, seed, method), named ``{entry:05d}_{slug}_{method}_s{seed}.{mp4|npz}`` (or a
folder of pngs), in the job's ``out_dir``. ``manifest.jsonl`` there holds one JSON object per finished item.

No loss, no lies: per item, the output is written to a temporary name and renamed when complete,
then its ``.json`` sidecar (mp4/png; an npz holds its metadata inside), then its manifest line is
appended (one ``write``, fsynced). A write that fails (a full disk, any ``OSError``) records the
item in ``failures.jsonl`` and the job goes on; what that item had already written is removed again
(a sidecar that cannot be written takes its video with it). A killed job therefore leaves at most
stale temporary files (removed by the next run) and never a manifest line without its file.
Re-running the same job skips items whose manifest line is present and whose output still
decodes to the recorded frame count, and redoes the rest. A changed configuration (``config_hash``,
fps included) is refused unless ``overwrite``. When ``manifest.jsonl`` or ``failures.jsonl``
cannot be written at the end, the run says so in one ``error:`` line and exits 1, and the per-rank
manifest shards stay for the next run to merge.

Scale-out uses torch.distributed: under ``torchrun --nproc_per_node N`` (multi-node too) every rank
plans the same items from the same on-disk state, a barrier follows, and rank ``r`` renders the
pending items ``r, r + N, r + 2N, ...`` (no overlap, no gap). Ranks append to their own
``manifest.rank{r}.jsonl``; rank 0 merges them into ``manifest.jsonl`` at the end (a later run
merges leftovers of a killed job too).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import ScaleCrafterError
from ..recipes.sidecar import run_record
from ..runtime import Dist, init_distributed
from .manifest import (FAILURES, LOCK, MANIFEST, append_line, check_out_dir, item_done, lock_out_dir,
                       merge_manifests, read_manifest, remove_output, sweep_temporaries)
from .plan import Item, config_hash, item_path, plan_items, shard, slug
from .prompts import PromptEntry, read_prompts

__all__ = ["BatchJob", "check_job", "run_batch"]


@dataclass
class BatchJob:
    """Everything a batch job needs, as plain values (``None``: the model's default; never 0).

    ``methods``: one output per method per seed (``[None]``: the schedule's own method);
    ``config`` / ``preset``: the schedule (a YAML path or ``"auto"`` / a shipped name);
    ``options``: family options keyed as the pipelines take them (``motion_bucket_id``, ...).
    """

    prompts: str | os.PathLike
    out_dir: str | os.PathLike
    model: str | os.PathLike
    methods: list = field(default_factory=lambda: [None])
    seeds: list = field(default_factory=lambda: [0])
    config: str | None = None
    preset: str | None = None
    model_config: str | None = None
    clip: str | None = None
    height: int | None = None
    width: int | None = None
    frames: int | None = None
    negative_prompt: str | None = None
    steps: int | None = None
    guidance: float | None = None
    eta: float | None = None
    fps: float | None = None
    format: str = "mp4"
    chunk_size: int | None = 8
    tile_size: int | None = None
    device: str = "auto"
    dtype: str = "auto"
    overwrite: bool = False
    image: str | None = None
    motion_adapter: str | None = None
    options: dict = field(default_factory=dict)
    progress: bool = True
    compile: bool = False  # torch.compile the UNet once loaded (engine.compile_unet)


def _render_frames(pipe, config, item: Item, call: dict, chunk_size: int, tile_size: int | None) -> np.ndarray:
    """One item through the pipeline protocol: every pipeline takes ``chunk_size`` / ``tile_size``
    (or refuses them with a clear error) and stops on non-finite latents."""
    from ..recipes import sample_video

    kwargs = dict(call, negative_prompt=item.negative_prompt, height=item.height, width=item.width,
                  num_frames=item.frames, progress=False, chunk_size=chunk_size)
    if tile_size is not None:
        kwargs["tile_size"] = tile_size
    return sample_video(pipe, config, item.prompt, item.seed, **kwargs)


def _write_output(frames: np.ndarray, out_dir: Path, rel: str, fmt: str, fps: float, meta: dict) -> None:
    from ..export import write_video

    target = out_dir / rel
    if fmt == "npz":
        with atomic.atomic_path(target, suffix=".npz") as tmp:
            np.savez_compressed(tmp, frames=frames, meta=np.array(json.dumps(meta, sort_keys=True)))
    else:
        write_video(frames, target, fps=fps, overwrite=True)  # only our own previous output is replaced


def _release_cached_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def check_job(job: "BatchJob") -> None:
    """Numbers of the job, checked before anything is loaded."""
    for key in ("height", "width", "frames", "steps", "chunk_size"):
        v = getattr(job, key)
        if v is not None and v <= 0:
            raise ScaleCrafterError(f"--{key.replace('_', '-')} must be positive, got {v}")
    if job.tile_size is not None and job.tile_size < 2:
        raise ScaleCrafterError(f"--tile-size must be at least 2 (latent pixels), got {job.tile_size}")
    if job.fps is not None and job.fps <= 0:
        raise ScaleCrafterError(f"--fps must be positive, got {job.fps}")



def run_batch(job: "BatchJob") -> int:
    """Render every planned item of ``job`` that is not finished yet; the exit code (0: all done,
    1: some items failed or the end-of-run files could not be written). Under torchrun every rank
    calls this with the same job."""
    from ..recipes import explicit_config

    check_job(job)
    explicit = {}
    for m in job.methods:  # schedules are checked before any model is loaded
        explicit[m] = explicit_config(config=job.config, preset=job.preset, method=m)
    entries = read_prompts(job.prompts)
    out_dir = Path(job.out_dir)
    check_out_dir(out_dir)  # before any model is loaded

    dist = init_distributed(job.device)
    try:
        return _run(job, dist, list(job.methods), list(job.seeds), explicit, entries, out_dir)
    finally:
        dist.close()



def _run(job, dist: Dist, methods, seeds, explicit: dict, entries: list[PromptEntry], out_dir: Path) -> int:
    from tqdm.auto import tqdm

    from ..digest import sha256_file
    from ..pipelines import load_pipeline
    from ..recipes import config_for
    from ..recipes.inputs import check_model_inputs, family_name, load_image
    from ..runtime import resolve_device, resolve_dtype

    started = time.perf_counter()
    device = resolve_device(job.device, local_rank=dist.local_rank)
    dtype = resolve_dtype(job.dtype, device)
    image = load_image(job.image) if job.image is not None else None
    options = dict(job.options)
    pipe = load_pipeline(job.model, device=device, dtype=dtype, model_config=job.model_config, clip_path=job.clip,
                         motion_adapter=job.motion_adapter)
    check_model_inputs(pipe, image, options)
    if job.compile:
        from ..engine import compile_unet

        compile_unet(pipe)
    if job.tile_size is not None and getattr(pipe, "vae", None) is None:
        raise ScaleCrafterError(f"--tile-size: {job.model} has no VAE (pixel-space model or image pipeline); drop the option")
    defaults = {
        "height": job.height or pipe.train_size[0], "width": job.width or pipe.train_size[1],
        "frames": job.frames or pipe.defaults.get("num_frames"), "negative_prompt": job.negative_prompt,
    }
    steps = job.steps or pipe.defaults.get("num_inference_steps")
    guidance = pipe.defaults.get("guidance_scale") if job.guidance is None else job.guidance
    eta = pipe.defaults.get("eta", 0.0) if job.eta is None else job.eta
    fps = job.fps or pipe.defaults.get("fps", 8)
    call = dict(num_inference_steps=steps, guidance_scale=guidance, eta=eta, **options)
    if image is not None:
        call["image"] = image
    image_hash = sha256_file(Path(job.image)) if job.image is not None else None
    meta = dict(family=family_name(pipe), image=job.image, image_sha256=image_hash, options=options,
                motion_adapter=job.motion_adapter, dtype=str(dtype), device=str(device), compiled=job.compile)

    # ---- plan: resolved config and hash per (method, size); a size the model refuses fails its items only
    items = plan_items(entries, methods, seeds, defaults)
    configs: dict[tuple, object] = {}
    for it in items:
        key = (it.method, it.height, it.width)
        if key not in configs:
            try:
                pipe.check_size(it.height, it.width)
                cfg = config_for(pipe, it.height, it.width, copy.deepcopy(explicit[it.method]), method=it.method)
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
            cfg.to_dict(), method=cfg.method, model=str(Path(job.model).resolve()), height=it.height,
            width=it.width, frames=it.frames, steps=steps, guidance=guidance, eta=eta,
            negative_prompt=it.negative_prompt, dtype=str(dtype), tile_size=job.tile_size, fps=fps,
            image=image_hash, options=options, motion_adapter=job.motion_adapter, family=family_name(pipe),
        )
    for it in items:
        if it.error is not None and not it.name:
            it.name = f"{it.entry:05d}_{slug(it.prompt)}_{it.method or 'auto'}_s{it.seed}"
    names = [item_path(it, job.format) for it in items]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[0]
        raise ScaleCrafterError(f"two planned items share the output name {dup} (a seed listed twice for one prompt?)")

    # ---- state on disk, read by every rank before any rank writes
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScaleCrafterError(f"--out-dir {out_dir} cannot be created: {exc.strerror or exc}") from None
    lock = lock_out_dir(out_dir) if dist.rank == 0 else None  # one job per folder (released by the OS on a kill)
    try:
        return _render_all(job, dist, items, configs, pipe, call, out_dir, fps, steps, guidance, eta, started, tqdm, meta)
    finally:
        if lock is not None:
            try:
                (out_dir / LOCK).unlink(missing_ok=True)
            except OSError:
                pass
            os.close(lock)



def _render_all(job, dist, items, configs, pipe, call, out_dir, fps, steps, guidance, eta, started, tqdm,
                meta) -> int:
    manifest = read_manifest(out_dir)
    conflicts = [it for it in items if it.error is None and (e := manifest.get(item_path(it, job.format)))
                 and e.get("config_hash") != it.config_hash]
    if conflicts and not job.overwrite:
        first = conflicts[0]
        old = manifest[item_path(first, job.format)].get("config_hash")
        raise ScaleCrafterError(
            f"{len(conflicts)} finished item(s) in {out_dir} were rendered with a different configuration "
            f"(e.g. {item_path(first, job.format)}: config_hash {old} != {first.config_hash}); "
            "pass --overwrite to re-render them, or use another --out-dir"
        )
    # Finished items are checked (decoded) once, spread over the ranks; the gather is the barrier
    # after which every rank knows the same state and rank 0 may write.
    candidates = [k for k, it in enumerate(items) if it.error is None
                  and (e := manifest.get(item_path(it, job.format))) and e.get("config_hash") == it.config_hash]
    checked = {k: item_done(out_dir, item_path(items[k], job.format), manifest[item_path(items[k], job.format)])
               for k in shard(candidates, dist.rank, dist.world)}
    done_set = {k for part in dist.gather(checked) for k, ok in part.items() if ok}
    pending = [it for k, it in enumerate(items) if k not in done_set]
    skipped = len(done_set)
    order = [item_path(it, job.format) for it in items]
    problem = None
    if dist.rank == 0:
        sweep_temporaries(out_dir)
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

    mine = shard(pending, dist.rank, dist.world)
    shard_file = out_dir / (MANIFEST if dist.world == 1 else f"manifest.rank{dist.rank}.jsonl")
    done, failures = 0, []
    bar = tqdm(total=len(mine), desc=f"render rank {dist.rank}/{dist.world}" if dist.world > 1 else "render",
               unit="video", position=dist.local_rank, disable=not job.progress, dynamic_ncols=True, file=sys.stderr)
    for it in mine:
        rel = item_path(it, job.format)
        t0 = time.perf_counter()
        try:
            if it.error is not None:
                raise ScaleCrafterError(it.error)
            cfg = configs[it.extra["config_key"]]
            frames = _render_frames(pipe, cfg, it, call, job.chunk_size, job.tile_size)
            seconds = round(time.perf_counter() - t0, 3)
            entry = {
                "path": rel, "prompt": it.prompt, "seed": it.seed, "model": str(job.model),
                "config_hash": it.config_hash, "method": it.method, "height": int(frames.shape[1]),
                "width": int(frames.shape[2]), "frames": int(frames.shape[0]), "seconds": seconds,
                "line": it.line, "negative_prompt": it.negative_prompt, "fps": fps, "format": job.format,
            }
            sidecar = run_record(
                prompt=it.prompt, negative_prompt=it.negative_prompt, seed=it.seed, model=job.model,
                height=entry["height"], width=entry["width"], frames=entry["frames"], fps=fps, steps=steps,
                guidance=guidance, eta=eta, config=cfg.to_dict(), seconds=seconds, path=rel,
                config_hash=it.config_hash, method=it.method, line=it.line, format=job.format,
                tile_size=job.tile_size, rank=dist.rank, **meta)
            _write_item(frames, out_dir, rel, job.format, fps, sidecar, entry, shard_file,
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
                atomic.write_text_atomic(failure_file, "".join(json.dumps(f, sort_keys=True) + "\n" for f in all_failures))
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
        from ..export import is_own_output

        if not is_own_output(target):
            target.unlink()
    _write_output(frames, out_dir, rel, fmt, fps, sidecar)
    side = out_dir / f"{rel}.json"
    try:
        if fmt != "npz":  # an npz holds its metadata inside
            atomic.write_json_atomic(side, sidecar)
        append_line(shard_file, entry)  # only after the output and its sidecar are complete
    except Exception:
        remove_output(target)
        if fmt != "npz":
            try:
                side.unlink(missing_ok=True)
            except OSError:
                pass
        raise
