"""Writing frames: mp4 (H.264), gif, webp, png frame folders, labelled side-by-side grids.

Frame contract: ``np.uint8`` arrays ``(frames, height, width, 3)`` RGB. Nothing is rescaled or
resized behind the caller's back (odd sizes are padded by one replicated row/column for H.264's
4:2:0 chroma only). Every file is written to a temporary name in the same folder and renamed when
complete, so a crash never leaves a half-written output.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import stat
from pathlib import Path

import numpy as np

from .atomic import atomic_path, temporary_pattern, write_json_atomic
from .errors import ScaleCrafterError

__all__ = ["VIDEO_SUFFIXES", "check_free_space", "check_output_path", "is_own_output", "sweep_stale_temporaries", "side_by_side", "write_json", "write_video"]

VIDEO_SUFFIXES = (".mp4", ".gif", ".webp")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:  # a single image
        frames = frames[None]
    if frames.dtype != np.uint8:
        raise ScaleCrafterError(f"frames must be uint8 (frames, height, width, 3), got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ScaleCrafterError(f"frames must have shape (frames, height, width, 3), got {frames.shape}")
    return frames


def _even(frames: np.ndarray) -> np.ndarray:
    h, w = frames.shape[1:3]
    return np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _write_mp4(frames: np.ndarray, path: Path, fps: float, crf: int) -> None:
    import av

    frames = _even(frames)
    # The file is opened (and always closed) by Python: PyAV leaves its own handle open when a write
    # fails on a full disk, which keeps the deleted temporary's space in use.
    with open(path, "wb") as fh, av.open(fh, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=round(fps) if float(fps).is_integer() else fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _write_animation(frames: np.ndarray, path: Path, fps: float, fmt: str) -> None:
    from PIL import Image

    images = [Image.fromarray(f) for f in frames]
    extra = {"lossless": True} if fmt == "WEBP" else {"optimize": False}
    images[0].save(
        path, format=fmt, save_all=True, append_images=images[1:], duration=max(int(round(1000 / fps)), 1),
        loop=0, **extra,
    )


def _write_frame_folder(frames: np.ndarray, folder: Path) -> None:
    from PIL import Image

    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{i:05d}.png")


# --------------------------------------------------------------------------- output safety
# A previous output of this tool is recognised by its content, not only its name: the magic bytes
# of the formats we write, or a folder that holds nothing but our numbered frames.
_MAGIC = {
    ".mp4": lambda b: b[4:8] == b"ftyp",
    ".gif": lambda b: b[:4] == b"GIF8",
    ".webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    ".png": lambda b: b[:8] == b"\x89PNG\r\n\x1a\n",
    ".jpg": lambda b: b[:3] == b"\xff\xd8\xff",
    ".jpeg": lambda b: b[:3] == b"\xff\xd8\xff",
    ".json": lambda b: b.lstrip()[:1] == b"{",
}
_FRAME_NAME = re.compile(r"frame_\d{5}\.png")
# Room for the temporary names written next to the target (".{name}.XXXXXXXX.tmp.mp4").
_TEMP_OVERHEAD = 24


def is_own_output(path) -> bool:
    """True when ``path`` is something this tool writes: a regular file (not a link) of one of our
    formats with that format's magic bytes, or a real folder holding only ``frame_NNNNN.png`` files."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if stat.S_ISREG(st.st_mode):
        check = _MAGIC.get(path.suffix.lower())
        if check is None:
            return False
        with open(path, "rb") as fh:
            return check(fh.read(16))
    if stat.S_ISDIR(st.st_mode):
        return all(_FRAME_NAME.fullmatch(e.name) and e.is_file(follow_symlinks=False) for e in os.scandir(path))
    return False


def _describe(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if stat.S_ISDIR(st.st_mode):
        return "a folder"
    if stat.S_ISFIFO(st.st_mode):
        return "a named pipe"
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return "a device"
    if stat.S_ISSOCK(st.st_mode):
        return "a socket"
    return "a file"


def check_output_path(path, *, overwrite: bool = False, what: str = "--out") -> Path:
    """Refuse an output location before any work is done; return it as a ``Path``.

    Refused: an empty name or ``.``/``..``; a name too long for the file system; a parent that is
    a file or cannot be created or written; an existing target unless ``overwrite``; and, even
    with ``overwrite``, anything that is not a previous output of this tool (a folder with other
    files, a symbolic link, a device, a named pipe, a file of another format).
    """
    raw = str(path)
    if not raw.strip() or Path(raw).name in ("", ".", ".."):
        raise ScaleCrafterError(f"{what} must name a file or a new folder, got {raw!r}")
    path = Path(raw)
    try:
        name_max = os.pathconf(path.parent if path.parent.is_dir() else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(path.name.encode("utf-8", "surrogateescape")) + _TEMP_OVERHEAD > name_max:
        raise ScaleCrafterError(f"{what}: the name {path.name[:40]!r}... is too long (at most {name_max - _TEMP_OVERHEAD} bytes)")
    ancestor = path.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ScaleCrafterError(f"{what}: {ancestor} is a file, so {path} cannot be created")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ScaleCrafterError(f"{what}: {ancestor} is not writable")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return path
    except OSError as exc:
        raise ScaleCrafterError(f"{what}: cannot inspect {path} ({exc.strerror})") from None
    kind = _describe(st)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        raise ScaleCrafterError(f"{what}: {path} is {kind}; refusing to replace it (choose another path)")
    if not overwrite:
        raise ScaleCrafterError(f"{what}: {path} already exists (pass --overwrite to replace a previous output)")
    if not is_own_output(path):
        detail = "holds files this tool did not write" if stat.S_ISDIR(st.st_mode) else "is not a video or image this tool wrote"
        raise ScaleCrafterError(f"{what}: {path} {detail}; refusing to replace it even with --overwrite")
    return path


def sweep_stale_temporaries(path) -> list[Path]:
    """Remove the hidden temporaries a killed earlier write of ``path`` left beside it (this tool's own
    names only, see :mod:`~scalecrafter_video.atomic`: ``.{name}.XXXXXXXX.tmp[{suffix}]``,
    ``.{name}.XXXXXXXX.old``, and the older ``.{stem}.XXXXXXXX.tmp{suffix}``)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return []
    ours = temporary_pattern(path.name)
    removed = []
    for entry in parent.iterdir():
        if not ours.fullmatch(entry.name) or entry.is_symlink():
            continue
        if entry.is_dir():
            if not is_own_output(entry):
                continue
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def check_free_space(path, frames: int, height: int, width: int) -> None:
    """Refuse to start when the disk at ``path`` cannot hold a conservative estimate of the output:
    3 bytes per pixel for frame folders (png), 1 for the compressed formats, plus a margin."""
    path = Path(path)
    suffix = path.suffix.lower()
    per_pixel = 1 if suffix in VIDEO_SUFFIXES or (suffix in IMAGE_SUFFIXES and frames == 1) else 3
    need = frames * height * width * per_pixel + (1 << 20)
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    try:
        free = shutil.disk_usage(ancestor).free
    except OSError:
        return
    if free < need:
        raise ScaleCrafterError(f"not enough free space at {ancestor}: about {need / 2**20:.1f} MiB needed for the "
                                f"output, {free / 2**20:.1f} MiB free")


def write_video(frames, path, fps: float = 8, crf: int = 17, *, overwrite: bool = False) -> Path:
    """Write ``frames`` (uint8 ``(f, h, w, 3)``) to ``path`` and return it.

    The suffix chooses the format: ``.mp4`` (H.264, yuv420p, constant quality ``crf``), ``.gif``,
    ``.webp`` (lossless, animated), ``.png``/``.jpg`` when there is exactly one frame (an image);
    any other path is a folder of numbered png frames.

    An existing ``path`` is refused unless ``overwrite``; even then only a previous output of this
    tool is replaced (see :func:`check_output_path`), atomically.
    """
    frames = _check_frames(frames)
    if not (math.isfinite(fps) and fps > 0):
        raise ScaleCrafterError(f"fps must be positive and finite, got {fps}")
    path = check_output_path(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(path)
    suffix = path.suffix.lower()
    single_image = suffix in IMAGE_SUFFIXES and len(frames) == 1

    if suffix in VIDEO_SUFFIXES or single_image:
        with atomic_path(path, suffix=suffix, swap_folders=True) as tmp:
            if suffix == ".mp4":
                _write_mp4(frames, tmp, fps, crf)
            elif suffix in (".gif", ".webp"):
                _write_animation(frames, tmp, fps, "GIF" if suffix == ".gif" else "WEBP")
            else:
                from PIL import Image

                Image.fromarray(frames[0]).save(tmp, format="PNG" if suffix == ".png" else "JPEG", quality=95)
        return path
    with atomic_path(path, folder=True, swap_folders=True) as tmp_dir:
        _write_frame_folder(frames, tmp_dir)
    return path


def write_json(path, data: dict, *, overwrite: bool = False) -> Path:
    """Write ``data`` as indented JSON atomically; an existing file only with ``overwrite`` (and only
    one of our own JSON files, see :func:`check_output_path`)."""
    path = check_output_path(path, overwrite=overwrite, what="sidecar")
    return write_json_atomic(path, data)


def _label_strip(text: str, width: int, height: int) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    strip = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(strip)
    try:
        font = ImageFont.load_default(size=max(8, height - 6))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    box = draw.textbbox((0, 0), text, font=font)
    tw, th = box[2] - box[0], box[3] - box[1]
    draw.text(((width - tw) // 2 - box[0], (height - th) // 2 - box[1]), text, fill=(240, 240, 240), font=font)
    return np.asarray(strip)


def side_by_side(videos, labels=None, gap: int = 4, label_height: int | None = None) -> np.ndarray:
    """Place videos (each uint8 ``(f, h, w, 3)``, same frame count) left to right, each with a
    label strip on top; shorter videos are centred vertically on a dark background."""
    videos = [_check_frames(v) for v in videos]
    if not videos:
        raise ScaleCrafterError("side_by_side needs at least one video")
    counts = {len(v) for v in videos}
    if len(counts) != 1:
        raise ScaleCrafterError(f"videos must have the same number of frames, got {sorted(counts)}")
    labels = list(labels) if labels is not None else []
    if labels and len(labels) != len(videos):
        raise ScaleCrafterError(f"{len(labels)} labels for {len(videos)} videos")
    frames = counts.pop()
    height = max(v.shape[1] for v in videos)
    strip_h = (label_height or max(12, min(24, height // 6))) if labels else 0
    width = sum(v.shape[2] for v in videos) + gap * (len(videos) - 1)
    canvas = np.full((frames, strip_h + height, width, 3), 24, dtype=np.uint8)
    x = 0
    for i, v in enumerate(videos):
        h, w = v.shape[1:3]
        top = strip_h + (height - h) // 2
        canvas[:, top : top + h, x : x + w] = v
        if labels:
            canvas[:, :strip_h, x : x + w] = _label_strip(str(labels[i]), w, strip_h)
        x += w + gap
    return canvas
