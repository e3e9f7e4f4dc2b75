"""FVD input sets: folders of videos or frame folders, ``.npy`` / ``.npz`` arrays, in-memory arrays;
the clip rule (the first ``T`` frames, every ``stride``-th) and content digests for the feature cache."""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..digest import sha256_file
from ..errors import ScaleCrafterError
from ..video_io import (
    ANIMATED_IMAGE_EXTENSIONS,
    FRAME_EXTENSIONS,
    VIDEO_EXTENSIONS,
    VideoReadError,
    natural_sort_key,
    read_video,
)

__all__ = ["BadVideosError", "CROP_SIZE", "InputSetError", "VideoSet", "crop_positions", "crop_set", "sample_clip"]


class BadVideosError(ScaleCrafterError):
    """Some inputs are corrupt, unreadable or too short; the message names every one."""


class InputSetError(ScaleCrafterError, ValueError):
    """An input set (folder, array file, array) is missing, empty or malformed."""


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


# --------------------------------------------------------------------------------------------- crops
CROP_SIZE = 224  # the I3D input: a crop of this size needs no resize at all


def crop_positions(count: int, seed: int = 0) -> np.ndarray:
    """``(count, 2)`` fractional ``(y, x)`` positions in ``[0, 1]`` of the crops' top-left corners,
    the same for every set and every video (``top = round(y * (H - size))``): a fixed seeded grid."""
    if count < 1:
        raise InputSetError(f"crops must be a positive number, got {count}")
    return np.random.default_rng([seed, 224]).random((count, 2))


def crop_set(vset: VideoSet, count: int, seed: int = 0, size: int = CROP_SIZE) -> VideoSet:
    """The ``count`` native-resolution ``size x size`` crops of every video of ``vset`` as a video set
    of its own (video-major: all crops of video 0, then of video 1, ...), for FVD_c.

    At the default ``size`` 224 the I3D sees the pixels as generated, no resize. A smaller ``size``
    (e.g. a model's training resolution, the patch-FID rule) is resized to 224 by the protocol's
    resize like any frame. A video smaller than ``size`` on a side is a bad item (named)."""
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise InputSetError(f"crop size must be a positive number of pixels, got {size!r}")
    positions = crop_positions(count, seed)
    out = VideoSet.__new__(VideoSet)
    out.label, out.ignored = vset.label, list(vset.ignored)
    out.description = f"{vset.description} ({count} crops of {size}x{size}, seed {seed})"
    lock, last = threading.Lock(), {}

    def load_video(index: int, max_frames: int) -> np.ndarray:
        # the crops of one video come one after another: decode it once for all of them
        with lock:
            if last.get("key") == (index, max_frames):
                return last["video"]
        video = vset.items[index].load(max_frames)
        with lock:
            last.update(key=(index, max_frames), video=video)
        return video

    def make(index: int, item, k: int, fy: float, fx: float) -> _Item:
        def load(max_frames: int) -> np.ndarray:
            video = load_video(index, max_frames)
            h, w = video.shape[1:3]
            if h < size or w < size:
                raise VideoReadError(f"{h}x{w} frames are smaller than the {size}x{size} crops of FVD_c")
            top, left = int(round(fy * (h - size))), int(round(fx * (w - size)))
            return video[:, top:top + size, left:left + size]

        return _Item(f"{item.name}#crop{k}", load, lambda: f"{item.digest()}|crop{size}@{fy:.9f},{fx:.9f}")

    out.items = [make(i, item, k, float(fy), float(fx))
                 for i, item in enumerate(vset.items) for k, (fy, fx) in enumerate(positions)]
    return out
