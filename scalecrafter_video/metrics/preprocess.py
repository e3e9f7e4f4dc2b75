"""FVD preprocessing: uint8 RGB clips -> I3D input in [-1, 1].

The reference (google-research ``frechet_video_distance``) resizes every frame straight to
224x224 with TF1 ``tf.image.resize_bilinear`` under its defaults (``align_corners=False``,
``half_pixel_centers=False``), then maps ``x -> 2 x / 255 - 1`` in float32. For output index
``j`` along an axis of input size ``n_in`` and output size ``n_out``, TF1's legacy scaler reads

    scale = float32(n_in / n_out);  src = j * scale           (no half-pixel offset)
    i0 = floor(src);  i1 = min(i0 + 1, n_in - 1);  a = src - i0

and blends horizontally first, then vertically:
``top = p00 + (p01 - p00) a_x``, ``bottom = p10 + (p11 - p10) a_x``, ``out = top + (bottom - top) a_y``.
No antialiasing, no crop, no aspect-ratio preservation.

Other resize methods exist only to reproduce numbers from other tools and are separate
protocols (never mix them between real and generated sets):

* ``"half_pixel"``: ``src = max((j + 0.5) * scale - 0.5, 0)``, as TF2 ``tf.image.resize`` and
  ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` (VideoGPT, TATS,
  LVDM, cd-fvd);
* ``"short_side_center_crop"``: half-pixel resize of the short side to 224, then a centre
  crop (VideoGPT, common_metrics_on_video_quality); this is a different metric on non-square
  video.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..errors import ScaleCrafterError

I3D_SIZE = 224
RESIZE_METHODS = ("tf1_legacy", "half_pixel", "short_side_center_crop")
DEFAULT_RESIZE = "tf1_legacy"

__all__ = [
    "I3D_SIZE",
    "RESIZE_METHODS",
    "DEFAULT_RESIZE",
    "PreprocessError",
    "resize_frames",
    "preprocess_clip",
    "preprocess_videos",
]


class PreprocessError(ScaleCrafterError, ValueError):
    """Frames of the wrong dtype, shape or value range for FVD preprocessing."""


def _axis_taps(n_in: int, n_out: int, half_pixel: bool, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices ``i0``, ``i1`` (int64) and weights ``a`` (float32) for one axis, each ``(n_out,)``."""
    scale = torch.tensor(n_in / n_out, dtype=torch.float32)
    j = torch.arange(n_out, dtype=torch.float32)
    if half_pixel:
        src = ((j + 0.5) * scale - 0.5).clamp_min(0.0)
    else:
        src = j * scale
    i0f = torch.floor(src)
    a = src - i0f
    i0 = i0f.to(torch.int64).clamp(max=n_in - 1)
    i1 = (i0 + 1).clamp(max=n_in - 1)
    return i0.to(device), i1.to(device), a.to(device)


def _resize_planar(planes: torch.Tensor, size: tuple[int, int], half_pixel: bool) -> torch.Tensor:
    """Bilinear resize of the last two axes of ``(..., height, width)``, float32 result.

    Separable and exact: the horizontal blend ``left + (right - left) a_x`` is computed once per
    source row the vertical pass reads, then ``top + (bottom - top) a_y``; every output value goes
    through the same three float32 roundings per axis as the direct four-tap formula, so results
    are bitwise those of blending the four taps per pixel. Taps are gathered in the input dtype
    (uint8 is 4x less memory traffic) and converted exactly afterwards.
    """
    h_in, w_in = planes.shape[-2], planes.shape[-1]
    h_out, w_out = size
    if (h_in, w_in) == (h_out, w_out):
        return planes.to(torch.float32, copy=True)
    y0, y1, ay = _axis_taps(h_in, h_out, half_pixel, planes.device)
    x0, x1, ax = _axis_taps(w_in, w_out, half_pixel, planes.device)
    rows, where = torch.unique(torch.cat([y0, y1]), return_inverse=True)
    src = planes.index_select(-2, rows)  # only the rows the vertical pass reads
    shape = src.shape[:-1] + (w_out,)
    # gather along the last axis (index_select there is an order of magnitude slower on CPU)
    left = torch.gather(src, -1, x0.expand(shape)).to(torch.float32)
    right = torch.gather(src, -1, x1.expand(shape)).to(torch.float32)
    rowwise = right.sub_(left).mul_(ax).add_(left)  # left + (right - left) * a_x
    top = rowwise.index_select(-2, where[:h_out])
    bottom = rowwise.index_select(-2, where[h_out:])
    return bottom.sub_(top).mul_(ay[:, None]).add_(top)  # top + (bottom - top) * a_y


def resize_frames(frames: torch.Tensor, size: tuple[int, int], method: str = DEFAULT_RESIZE) -> torch.Tensor:
    """Bilinear resize of channel-last frames, computed in float32.

    Args:
        frames: ``(..., height, width, channels)`` tensor (any real dtype; computed in float32).
        size: ``(out_height, out_width)``.
        method: ``"tf1_legacy"`` (the FVD reference) or ``"half_pixel"``.

    Returns:
        float32 tensor ``(..., out_height, out_width, channels)``.
    """
    if method not in ("tf1_legacy", "half_pixel"):
        raise PreprocessError(f"resize_frames: method must be 'tf1_legacy' or 'half_pixel', got {method!r}")
    planes = frames.movedim(-1, 0)  # channels first: the taps are gathered along contiguous rows
    out = _resize_planar(planes, tuple(size), method == "half_pixel")
    return out.movedim(0, -1).contiguous()


def _short_side_center_crop(planes: torch.Tensor, out: int) -> torch.Tensor:
    """``(C, T, H, W)`` -> ``(C, T, out, out)``: half-pixel resize of the short side to ``out``, centre crop."""
    h, w = planes.shape[-2], planes.shape[-1]
    if h <= w:
        nh, nw = out, max(out, int(round(w * out / h)))
    else:
        nh, nw = max(out, int(round(h * out / w))), out
    resized = _resize_planar(planes, (nh, nw), half_pixel=True)
    top, left = (nh - out) // 2, (nw - out) // 2
    return resized[..., top : top + out, left : left + out]


def _as_uint8_tensor(video) -> torch.Tensor:
    if isinstance(video, np.ndarray):
        if video.dtype != np.uint8:
            raise PreprocessError(
                f"FVD expects uint8 RGB frames in [0, 255], got dtype {video.dtype}; quantise generated "
                "videos exactly as they are saved (e.g. (x * 255).round().clip(0, 255).astype(np.uint8))"
            )
        video = np.ascontiguousarray(video)
        return torch.from_numpy(video if video.flags.writeable else video.copy())
    if isinstance(video, torch.Tensor):
        if video.dtype != torch.uint8:
            raise PreprocessError(
                f"FVD expects uint8 RGB frames in [0, 255], got dtype {video.dtype}; quantise generated "
                "videos exactly as they are saved"
            )
        return video
    raise PreprocessError(f"expected a numpy array or torch tensor of frames, got {type(video).__name__}")


def preprocess_clip(
    clip,
    resize_method: str = DEFAULT_RESIZE,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """One uint8 RGB clip ``(T, H, W, 3)`` (or ``(T, H, W, 1)``) -> float32 ``(3, T, 224, 224)`` in ``[-1, 1]``.

    Exactly one element of :func:`preprocess_videos` (which stacks these): the FVD loader calls it
    on worker threads, one clip at a time, and the stacked result is bitwise the batched one.
    """
    if resize_method not in RESIZE_METHODS:
        raise PreprocessError(f"unknown resize method {resize_method!r}; choose one of {', '.join(RESIZE_METHODS)}")
    clip = _as_uint8_tensor(clip)
    if clip.ndim != 4 or clip.shape[-1] not in (1, 3):
        raise PreprocessError(f"expected (T, H, W, 3) RGB frames, got shape {tuple(clip.shape)}")
    if device is not None:
        clip = clip.to(device)
    planes = clip.permute(3, 0, 1, 2)  # (C, T, H, W) view: rows contiguous per channel after the row gather
    if planes.shape[0] == 1:
        planes = planes.expand(3, *planes.shape[1:])
    if resize_method == "short_side_center_crop":
        x = _short_side_center_crop(planes, I3D_SIZE).contiguous()
    else:
        x = _resize_planar(planes, (I3D_SIZE, I3D_SIZE), resize_method == "half_pixel")
    return x.mul_(2.0).div_(255.0).sub_(1.0)  # 2 x / 255 - 1, the same three roundings as the reference


def preprocess_videos(
    videos_uint8_NTHWC,
    resize_method: str = DEFAULT_RESIZE,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """uint8 RGB clips -> I3D input.

    Args:
        videos_uint8_NTHWC: uint8 array/tensor ``(N, T, H, W, 3)`` (RGB), or a sequence of
            ``(T, H, W, 3)`` clips of equal ``T`` whose sizes may differ. Grayscale
            ``(..., 1)`` frames are repeated to 3 channels.
        resize_method: ``"tf1_legacy"`` (reference, default), ``"half_pixel"`` or
            ``"short_side_center_crop"``; the latter two are other tools' protocols.
        device: where to compute (default: where the input lives, CPU for numpy).

    Returns:
        float32 tensor ``(N, 3, T, 224, 224)`` with values in ``[-1, 1]``.
    """
    if resize_method not in RESIZE_METHODS:
        raise PreprocessError(f"unknown resize method {resize_method!r}; choose one of {', '.join(RESIZE_METHODS)}")
    if isinstance(videos_uint8_NTHWC, (np.ndarray, torch.Tensor)):
        batch = _as_uint8_tensor(videos_uint8_NTHWC)
        if batch.ndim != 5:
            raise PreprocessError(f"expected videos of shape (N, T, H, W, 3), got {tuple(batch.shape)}")
        clips: Sequence[torch.Tensor] = list(batch.unbind(0)) if batch.shape[0] else []
    else:
        clips = [_as_uint8_tensor(v) for v in videos_uint8_NTHWC]
    if not clips:
        raise PreprocessError("no videos to preprocess")
    out = []
    num_frames = None
    for k, clip in enumerate(clips):
        if clip.ndim != 4 or clip.shape[-1] not in (1, 3):
            raise PreprocessError(f"video {k}: expected (T, H, W, 3) RGB frames, got shape {tuple(clip.shape)}")
        if num_frames is None:
            num_frames = clip.shape[0]
        elif clip.shape[0] != num_frames:
            raise PreprocessError(f"video {k} has {clip.shape[0]} frames, the first has {num_frames}; clips must share T")
        out.append(preprocess_clip(clip, resize_method, device))
    return torch.stack(out)
