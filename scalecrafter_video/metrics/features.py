"""I3D features of video sets: batching, the feature cache, and sharding over torchrun ranks.

A clip is embedded as the reference protocol does: TF1-legacy bilinear resize straight to 224x224,
``[-1, 1]``, the Kinetics-400 I3D's 400 logits averaged over time, in full fp32 (TF32 off).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import atomic
from ..runtime import current_dist, resolve_device
from ..video_io import VideoReadError
from .i3d import MIN_FRAMES
from .i3d_weights import load_i3d
from .inputs import BadVideosError, InputSetError, VideoSet, sample_clip
from .loader import BatchPrefetcher
from .preprocess import DEFAULT_RESIZE, RESIZE_METHODS, preprocess_clip, preprocess_videos

__all__ = ["FEATURE_VERSION", "FeatureSet", "default_workers", "embed_video_sets", "embed_videos", "i3d_features", "model_device", "model_fingerprint"]

FEATURE_VERSION = "i3d-rgb-tfhub-logits-mean/v1"


@contextlib.contextmanager
def _full_fp32():
    """Disable TF32 for matmuls and cuDNN convolutions inside the block (restored afterwards)."""
    prev = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev


def model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.inference_mode()
def _forward(model, x: torch.Tensor) -> np.ndarray:
    with _full_fp32():
        logits = model(x.float())
    return logits.float().cpu().numpy()


@torch.inference_mode()
def _embed_batch(model, clips, resize_method) -> np.ndarray:
    return _forward(model, preprocess_videos(clips, resize_method=resize_method, device=model_device(model)))


def i3d_features(
    videos_uint8_NTHWC,
    model: torch.nn.Module | None = None,
    batch_size: int = 16,
    device=None,
    resize_method: str = DEFAULT_RESIZE,
    progress: bool = False,
) -> np.ndarray:
    """I3D logits of uint8 RGB clips.

    Args:
        videos_uint8_NTHWC: uint8 ``(N, T, H, W, 3)`` array/tensor (or a list of ``(T, H, W, 3)``
            clips sharing ``T``), already sampled with the clip rule; ``T >= 9``.
        model: an :class:`~.i3d.I3D` (default: :func:`~.i3d.load_i3d` with BN folding).
        batch_size: clips per forward pass.
        device: used only when ``model`` is None (``"auto"``: CUDA when available).
        resize_method: see :mod:`.preprocess` (default ``"tf1_legacy"``, the reference).

    Returns:
        float32 ``np.ndarray`` ``(N, 400)``: pre-softmax logits averaged over time.
    """
    if model is None:
        model = load_i3d(device=resolve_device(device), optimize=True)
    if isinstance(videos_uint8_NTHWC, (np.ndarray, torch.Tensor)):
        if videos_uint8_NTHWC.ndim != 5:
            raise InputSetError(f"expected videos (N, T, H, W, 3), got shape {tuple(videos_uint8_NTHWC.shape)}")
        n = videos_uint8_NTHWC.shape[0]
    else:
        n = len(videos_uint8_NTHWC)
    if n == 0:
        raise InputSetError("no videos given")
    from tqdm.auto import tqdm

    out = []
    for start in tqdm(range(0, n, batch_size), desc="I3D", unit="batch", disable=not progress):
        out.append(_embed_batch(model, videos_uint8_NTHWC[start : start + batch_size], resize_method))
    return np.concatenate(out)


@dataclass
class FeatureSet:
    """Features of a :class:`VideoSet`: ``features (N_good, 400)`` float32 in set order, the
    names of the embedded videos, the ``(name, reason)`` of every bad one, source sizes seen."""

    features: np.ndarray
    names: list[str]
    bad: list[tuple[str, str]]
    source_sizes: list[tuple[int, int]]
    cache_hits: int = 0
    shard_size: int = 0  # videos this rank was responsible for (all of them without sharding)


@dataclass
class _Prepared:
    """One item after the loader: bad (with the reason), a cache hit, or a clip ready for the network
    (``x``: preprocessed ``(3, T, 224, 224)`` float32 on the CPU; ``clip``: uint8 ``(T, H, W, 3)``
    for a resize on the network's device)."""

    idx: int
    key: str | None = None
    bad: str | None = None
    cached: tuple | None = None
    size: tuple | None = None
    x: torch.Tensor | None = None
    clip: np.ndarray | None = None


def default_workers(device: torch.device) -> int:
    """Loader threads: 2 next to a CPU network (decoding and the resize are ~10-15% of its work,
    and every thread competes with it for the cores); up to 8 feeding an accelerator."""
    if device.type == "cpu":
        return 2
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def _cache_key(digest: str, settings: dict) -> str:
    blob = json.dumps({"content": digest, **settings}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def model_fingerprint(model) -> str:
    fp = getattr(model, "weights_fingerprint", None)
    if fp is None:
        h = hashlib.sha256()
        for k, v in sorted(model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        fp = h.hexdigest()
        model.weights_fingerprint = fp
    return fp


def embed_videos(
    source,
    model: torch.nn.Module,
    num_frames: int = 16,
    stride: int = 1,
    batch_size: int = 16,
    resize_method: str = DEFAULT_RESIZE,
    max_videos: int | None = None,
    skip_bad: bool = False,
    cache_dir: str | os.PathLike | None = None,
    label: str = "videos",
    progress: bool = False,
    workers: int | None = None,
    prefetch: int = 2,
) -> FeatureSet:
    """Embed a video set with the clip rule; shards over ranks when torch.distributed is
    initialised (the set is cut into fixed slices of ``batch_size``; rank ``r`` of ``W`` embeds
    slices ``r, r + W, ...``; results are gathered to every rank in set order, identical to a
    single-process run).

    Bad items (unreadable, corrupt, too short) are collected; unless ``skip_bad`` a
    :class:`BadVideosError` naming all of them is raised (on every rank, after the gather).
    With ``cache_dir`` each item's features are stored under a key made of the file content
    hash and the protocol settings (frames, stride, resize, weights), so a reference set is
    embedded once.

    Decoding, clip sampling and (when the network runs on the CPU) the resize run on ``workers``
    threads, at most ``prefetch`` batches ahead of the network (:class:`~.loader.BatchPrefetcher`;
    ``None``: :func:`default_workers`; ``0``: everything in this thread, one item after the
    other). The features do not depend on either setting: batches are the same fixed slices and
    each clip's preprocessing is bitwise that of the batched path. On an accelerator the resize
    runs there, on the batch, in this thread (it is cheap there and keeps host work for decoding).
    """
    return embed_video_sets(
        [source], model, labels=[label], num_frames=num_frames, stride=stride, batch_size=batch_size,
        resize_method=resize_method, max_videos=max_videos, skip_bad=skip_bad, cache_dir=cache_dir,
        progress=progress, workers=workers, prefetch=prefetch,
    )[0]


@dataclass
class _SetState:
    vset: VideoSet
    mine: list[int]
    feats: dict
    sizes: dict
    bad: list
    hits: int = 0
    bar: object = None


def embed_video_sets(
    sources,
    model: torch.nn.Module,
    labels=None,
    num_frames: int = 16,
    stride: int = 1,
    batch_size: int = 16,
    resize_method: str = DEFAULT_RESIZE,
    max_videos: int | None = None,
    skip_bad: bool = False,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = False,
    workers: int | None = None,
    prefetch: int = 2,
) -> list[FeatureSet]:
    """:func:`embed_videos` of several sets (e.g. real and generated) through one loader, so the
    next set is decoded while the network finishes the previous one. Each set is batched and
    sharded on its own exactly as :func:`embed_videos` does it (the same features); errors are
    raised for the first set in order that has them. Every set is opened (and checked) first."""
    if num_frames < MIN_FRAMES:
        raise InputSetError(
            f"num_frames={num_frames}: the I3D Logits endpoint needs at least {MIN_FRAMES} frames "
            "(16 is the standard FVD_16)"
        )
    if stride < 1:
        raise InputSetError(f"stride must be >= 1, got {stride}")
    if resize_method not in RESIZE_METHODS:
        raise InputSetError(f"unknown resize method {resize_method!r}; choose one of {', '.join(RESIZE_METHODS)}")
    labels = list(labels) if labels is not None else ["videos"] * len(sources)
    vsets = [src if isinstance(src, VideoSet) else VideoSet(src, label=lab, max_videos=max_videos)
             for src, lab in zip(sources, labels)]
    dist = current_dist()
    rank, world = dist.rank, dist.world
    settings = {
        "feature": FEATURE_VERSION,
        "weights": model_fingerprint(model),
        "num_frames": num_frames,
        "stride": stride,
        "resize": resize_method,
    }
    cache = Path(cache_dir) if cache_dir is not None else None
    need = (num_frames - 1) * stride + 1
    device = model_device(model)
    resize_on_worker = device.type == "cpu"

    def prepare(job: tuple[int, int]) -> _Prepared:
        """Worker side: cache key and lookup, decode, clip rule, and the CPU resize."""
        s, idx = job
        item = vsets[s].items[idx]
        try:
            key = _cache_key(item.digest(), settings) if cache is not None else None
        except OSError as exc:
            return _Prepared(idx, bad=f"unreadable ({exc})")
        if key is not None:
            hit = _cache_load(cache, key)
            if hit is not None:
                return _Prepared(idx, key, cached=hit)
        try:
            clip = sample_clip(item.load(need), num_frames, stride)
        except VideoReadError as exc:
            return _Prepared(idx, key, bad=str(exc))
        size = tuple(clip.shape[1:3])
        if resize_on_worker:
            return _Prepared(idx, key, size=size, x=preprocess_clip(clip, resize_method))
        return _Prepared(idx, key, size=size, clip=clip)

    from tqdm.auto import tqdm

    # Fixed slices of each set are the batches, and rank r takes slices r, r + W, ...: every
    # clip is embedded in the same batch as in a single-process run (bitwise-equal features).
    states: list[_SetState] = []
    batches: list[list[tuple[int, int]]] = []
    for s, vset in enumerate(vsets):
        chunks = [range(i, min(i + batch_size, len(vset))) for i in range(0, len(vset), batch_size)]
        mine = chunks[rank::world]
        states.append(_SetState(vset, [idx for chunk in mine for idx in chunk], {}, {}, []))
        batches.extend([(s, idx) for idx in chunk] for chunk in mine)
    n_workers = default_workers(device) if workers is None else workers
    current = None
    try:
        with BatchPrefetcher(batches, prepare, workers=n_workers, prefetch=prefetch) as loader:
            for batch, prepared in loader:
                s = batch[0][0]
                st = states[s]
                if current is not st:
                    if current is not None:
                        current.bar.close()
                    current = st
                    st.bar = tqdm(total=len(st.mine), desc=f"I3D {st.vset.label}", unit="video",
                                  disable=not progress or rank != 0)
                pending: list[_Prepared] = []
                for rec in prepared:
                    if rec.bad is not None:
                        st.bad.append((rec.idx, st.vset.items[rec.idx].name, rec.bad))
                        st.bar.update(1)
                        continue
                    if rec.cached is not None:
                        st.feats[rec.idx], st.sizes[rec.idx] = rec.cached
                        st.hits += 1
                        st.bar.update(1)
                        continue
                    st.sizes[rec.idx] = rec.size
                    if not skip_bad and any(other.bad for other in states):
                        st.bar.update(1)
                        continue  # the run will fail: keep scanning to name every bad file, skip the compute
                    pending.append(rec)
                if pending:
                    if resize_on_worker:
                        out = _forward(model, torch.stack([rec.x for rec in pending]))
                    else:
                        out = _embed_batch(model, [rec.clip for rec in pending], resize_method)
                    for rec, f in zip(pending, out):
                        st.feats[rec.idx] = f
                        if rec.key is not None:
                            _cache_store(cache, rec.key, f, rec.size)
                    st.bar.update(len(pending))
    finally:
        if current is not None:
            current.bar.close()

    results = []
    for st in states:
        feats, sizes, bad, hits = st.feats, st.sizes, st.bad, st.hits
        if world > 1:
            gathered = dist.gather((feats, sizes, bad, hits))
            feats, sizes, bad, hits = {}, {}, [], 0
            for f, sz, b, h in gathered:
                feats.update(f)
                sizes.update(sz)
                bad.extend(b)
                hits += h
        bad.sort()
        results.append((st, feats, sizes, bad, hits))
    out_sets = []
    for st, feats, sizes, bad, hits in results:
        vset = st.vset
        if bad and not skip_bad:
            lines = "\n".join(f"  {name}: {reason}" for _, name, reason in bad)
            raise BadVideosError(
                f"{len(bad)} of {len(vset)} {vset.label} videos cannot be used (pass --skip-bad / skip_bad=True "
                f"to leave them out and report them):\n{lines}"
            )
        order = sorted(feats)
        if not order:
            raise InputSetError(f"{vset.label}: no usable videos in {vset.description}")
        out_sets.append(FeatureSet(
            features=np.stack([feats[i] for i in order]).astype(np.float32),
            names=[vset.items[i].name for i in order],
            bad=[(name, reason) for _, name, reason in bad],
            source_sizes=sorted({sizes[i] for i in order if i in sizes}),
            cache_hits=hits,
            shard_size=len(st.mine),
        ))
    return out_sets


def _cache_path(cache: Path, key: str) -> Path:
    return cache / key[:2] / f"{key}.npz"


def _cache_load(cache: Path, key: str):
    p = _cache_path(cache, key)
    if not p.exists():
        return None
    try:
        with np.load(p, allow_pickle=False) as z:
            return z["features"].astype(np.float32), tuple(int(v) for v in z["source_size"])
    except Exception:  # a damaged cache entry is recomputed, never trusted
        return None


def _cache_store(cache: Path, key: str, feature: np.ndarray, source_size) -> None:
    p = _cache_path(cache, key)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(p, suffix=".npz", fsync=False) as tmp:
        np.savez(tmp, features=np.asarray(feature, np.float32), source_size=np.asarray(source_size, np.int64))
