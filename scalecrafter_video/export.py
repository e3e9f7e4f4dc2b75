"""Writing frames: mp4 (H.264), gif, webp, png frame folders, labelled side-by-side grids.

Frame contract: ``np.uint8`` arrays ``(frames, height, width, 3)`` RGB. Nothing is rescaled or
resized behind the caller's back (odd sizes are padded by one replicated row/column for H.264's
4:2:0 chroma only). Every file is written to a temporary name in the same folder and renamed when
complete, so a crash never leaves a half-written output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .errors import ScaleCrafterError

__all__ = ["VIDEO_SUFFIXES", "side_by_side", "write_video"]

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
    with av.open(str(path), mode="w", format="mp4") as container:
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


def write_video(frames, path, fps: float = 8, crf: int = 17) -> Path:
    """Write ``frames`` (uint8 ``(f, h, w, 3)``) to ``path`` and return it.

    The suffix chooses the format: ``.mp4`` (H.264, yuv420p, constant quality ``crf``), ``.gif``,
    ``.webp`` (lossless, animated), ``.png``/``.jpg`` when there is exactly one frame (an image);
    any other path is a folder of numbered png frames.
    """
    frames = _check_frames(frames)
    if fps <= 0:
        raise ScaleCrafterError(f"fps must be positive, got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    single_image = suffix in IMAGE_SUFFIXES and len(frames) == 1

    if suffix in VIDEO_SUFFIXES or single_image:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp)
        try:
            if suffix == ".mp4":
                _write_mp4(frames, tmp, fps, crf)
            elif suffix in (".gif", ".webp"):
                _write_animation(frames, tmp, fps, "GIF" if suffix == ".gif" else "WEBP")
            else:
                from PIL import Image

                Image.fromarray(frames[0]).save(tmp, format="PNG" if suffix == ".png" else "JPEG", quality=95)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        _write_frame_folder(frames, tmp_dir)
        os.chmod(tmp_dir, 0o777 & ~_umask())
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp_dir, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_dir, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
