"""Reading videos: the project's one place that decodes video files and frame folders.

Contract of :func:`read_video`: it returns the decoded frames as a ``numpy.ndarray`` of shape
``(frames, height, width, 3)``, dtype ``uint8``, RGB order, values exactly as stored (no resize,
no colour conversion beyond "to RGB"). Anything it cannot read raises :class:`VideoReadError`
naming the file.

Supported inputs:

* ``.mp4 .webm .mkv .mov .avi .m4v`` files: decord when installed, PyAV otherwise (and PyAV
  again when decord fails on a file); ``backend=`` picks one of them instead;
* ``.gif .webp`` (animated) files: Pillow, every frame composited and converted to RGB;
* a folder of ``.png/.jpg/.jpeg`` frames, sorted naturally (``2.png`` before ``10.png``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .errors import ScaleCrafterError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v")
ANIMATED_IMAGE_EXTENSIONS = (".gif", ".webp")
FRAME_EXTENSIONS = (".png", ".jpg", ".jpeg")
CONTAINER_BACKENDS = ("auto", "decord", "pyav")

__all__ = [
    "VideoReadError",
    "read_video",
    "natural_sort_key",
    "is_video_file",
    "is_frame_folder",
    "VIDEO_EXTENSIONS",
    "ANIMATED_IMAGE_EXTENSIONS",
    "FRAME_EXTENSIONS",
    "CONTAINER_BACKENDS",
]


class VideoReadError(ScaleCrafterError, OSError):
    """A video file or frame folder is missing, unsupported, corrupt or empty."""


def natural_sort_key(name: str | os.PathLike) -> tuple:
    """Sort key that orders embedded integers numerically: ``f2`` < ``f10``."""
    parts = re.split(r"(\d+)", os.fspath(name))
    return tuple((0, int(p), p) if p.isdigit() else (1, 0, p.lower()) for p in parts)


def is_video_file(path: str | os.PathLike) -> bool:
    """True for a file whose extension :func:`read_video` decodes."""
    p = Path(path)
    return p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS + ANIMATED_IMAGE_EXTENSIONS


def _frame_files(folder: Path) -> list[Path]:
    files = [f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in FRAME_EXTENSIONS]
    return sorted(files, key=lambda f: natural_sort_key(f.name))


def is_frame_folder(path: str | os.PathLike) -> bool:
    """True for a folder holding at least one png/jpg frame."""
    p = Path(path)
    return p.is_dir() and len(_frame_files(p)) > 0


def read_video(path: str | os.PathLike, max_frames: int | None = None, backend: str = "auto") -> np.ndarray:
    """Decode a video file or a folder of frames.

    Args:
        path: a video file (mp4/webm/mkv/mov/avi/m4v, gif/webp) or a folder of png/jpg frames.
        max_frames: decode at most this many leading frames (``None``: all frames).
        backend: decoder of container files (mp4, webm, ...): ``"auto"`` (decord when installed,
            PyAV otherwise or when decord fails), ``"decord"`` or ``"pyav"`` (that one only).
            Animated images and frame folders are always read with Pillow.

    Returns:
        ``np.ndarray`` of shape ``(frames, height, width, 3)``, dtype ``uint8``, RGB.

    Raises:
        VideoReadError: missing path, unsupported extension, undecodable or empty video,
            frames of different sizes in a folder.
    """
    p = Path(path)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1 or None, got {max_frames}")
    if backend not in CONTAINER_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(CONTAINER_BACKENDS)}, got {backend!r}")
    if not p.exists():
        raise VideoReadError(f"{p}: no such file or folder")
    if p.is_dir():
        frames = _read_frame_folder(p, max_frames)
    else:
        ext = p.suffix.lower()
        if ext in ANIMATED_IMAGE_EXTENSIONS:
            frames = _read_with_pillow(p, max_frames)
        elif ext in VIDEO_EXTENSIONS:
            frames = _read_container(p, max_frames, backend)
        else:
            raise VideoReadError(
                f"{p}: unsupported extension {ext!r}; expected one of "
                f"{', '.join(VIDEO_EXTENSIONS + ANIMATED_IMAGE_EXTENSIONS)} or a folder of frames"
            )
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise VideoReadError(f"{p}: decoded no RGB frames (got array of shape {frames.shape})")
    return np.ascontiguousarray(frames, dtype=np.uint8)


def _read_frame_folder(folder: Path, max_frames: int | None) -> np.ndarray:
    from PIL import Image

    files = _frame_files(folder)
    if not files:
        raise VideoReadError(f"{folder}: folder holds no {'/'.join(FRAME_EXTENSIONS)} frames")
    if max_frames is not None:
        files = files[:max_frames]
    frames = []
    for f in files:
        try:
            with Image.open(f) as im:
                frames.append(np.asarray(im.convert("RGB")))
        except Exception as exc:  # Pillow raises many types for broken files
            raise VideoReadError(f"{f}: cannot read frame ({type(exc).__name__}: {exc})") from exc
    shapes = {fr.shape for fr in frames}
    if len(shapes) > 1:
        raise VideoReadError(f"{folder}: frames have different sizes {sorted(shapes)}")
    return np.stack(frames)


def _read_with_pillow(path: Path, max_frames: int | None) -> np.ndarray:
    from PIL import Image, ImageSequence

    try:
        frames = []
        with Image.open(path) as im:
            for frame in ImageSequence.Iterator(im):
                frames.append(np.asarray(frame.convert("RGB")))
                if max_frames is not None and len(frames) >= max_frames:
                    break
    except Exception as exc:
        raise VideoReadError(f"{path}: cannot decode ({type(exc).__name__}: {exc})") from exc
    if not frames:
        raise VideoReadError(f"{path}: no frames decoded")
    return np.stack(frames)


def _read_container(path: Path, max_frames: int | None, backend: str = "auto") -> np.ndarray:
    errors = []
    if backend in ("auto", "decord"):
        try:
            import decord  # noqa: F401
        except ImportError:
            if backend == "decord":
                raise VideoReadError(f"{path}: backend 'decord' is not installed") from None
        else:
            try:
                return _read_with_decord(path, max_frames)
            except Exception as exc:
                errors.append(f"decord: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
        if backend == "decord":
            raise VideoReadError(f"{path}: cannot decode ({'; '.join(errors)})")
    try:
        return _read_with_pyav(path, max_frames)
    except Exception as exc:
        errors.append(f"PyAV: {type(exc).__name__}: {exc}")
    raise VideoReadError(f"{path}: cannot decode ({'; '.join(errors)})")


def _read_with_decord(path: Path, max_frames: int | None) -> np.ndarray:
    import decord

    vr = decord.VideoReader(os.fspath(path), ctx=decord.cpu(0), num_threads=1)
    n = len(vr)
    if n == 0:
        raise ValueError("container reports 0 frames")
    if max_frames is not None:
        n = min(n, max_frames)
    return vr.get_batch(list(range(n))).asnumpy()


def _read_with_pyav(path: Path, max_frames: int | None) -> np.ndarray:
    import av

    frames = []
    with av.open(os.fspath(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError("no frames decoded")
    return np.stack(frames)
