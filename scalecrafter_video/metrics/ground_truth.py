"""Ground-truth metrics for the synthetic moving-shape world (:mod:`scalecrafter_video.demo.scenes`).

Every scene holds exactly one object of a known colour, a known size range and a known direction,
so a generated video can be checked without any learned feature extractor:

* **objects per frame**: connected components (8-connectivity) of the pixels whose RGB distance to
  the background colour exceeds ``threshold``, ignoring components smaller than ``min_area`` of
  the frame's pixels. One object per frame is the target; object repetition (the paper's
  failure at high resolution) shows as several.
* **scale error**: the largest component's equal-area radius ``sqrt(area / pi)`` as a fraction of
  the frame's shorter side, compared with the scene's true size (or, for a generated video, with
  the training size range): ``|log(r / r_true)|`` (0 inside the range when a range is given).
* **colour fidelity**: the mean colour of the object's core pixels against the prompted colour
  (RGB distance in [0, 1] units) and whether the nearest palette colour is the prompted one.
* **temporal stability**: the fraction of consecutive frame pairs in which the same single object
  persists: one object in both frames, same palette colour, area ratio within 1.5x, centroid
  moved less than 0.15 of the shorter side. **direction accuracy**: whether the centroid's overall
  motion points the prompted way; **axis accuracy**: whether it runs along the prompted axis
  (horizontal for left / right), either way; **travel**: its length as a fraction of the shorter side.
* **shape accuracy**: the share of frames with an object whose largest object is classified as the
  prompted shape by *template overlap*: the object's pixel mask against an upright circle, square
  and triangle of the same area centred on its centroid; the template with the highest IoU names
  the shape (:func:`classify_shape`). It uses only areas, so ragged rims and mottled colours of
  generated shapes do not move it (a first descriptor, the fill ratio of the circumscribed circle,
  read visibly correct generated circles as squares: one outlying rim pixel sets its radius).

Frames are uint8 ``(F, H, W, 3)`` (or float in [0, 1]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..demo.scenes import COLOURS, DIRECTIONS, SHAPES, SIZE_RANGE, Scene, parse_prompt, shape_distance

__all__ = [
    "classify_shape",
    "shape_overlaps",
    "DEFAULT_MIN_AREA",
    "DEFAULT_THRESHOLD",
    "FrameObjects",
    "count_objects",
    "estimate_background",
    "evaluate_video",
    "find_objects",
    "summarize",
]

DEFAULT_THRESHOLD = 0.3  # RGB distance (in [0, 1] units) that makes a pixel "object"
DEFAULT_MIN_AREA = 0.003  # smallest object, as a fraction of the frame's pixels
_EIGHT = np.ones((3, 3), bool)


def _as_float(frames) -> np.ndarray:
    a = np.asarray(frames)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return a.astype(np.float32)


def estimate_background(frames) -> np.ndarray:
    """Per-channel median over all pixels of a video (objects cover far less than half a frame)."""
    a = _as_float(frames)
    return np.median(a.reshape(-1, a.shape[-1]), axis=0)


@dataclass
class FrameObjects:
    """Objects found in one frame: ``areas`` (pixels), ``centroids`` ((y, x) pixels),
    ``colours`` (mean RGB of each object's core) and ``shapes`` (each one's shape by
    :func:`classify_shape`), largest first."""

    areas: np.ndarray
    centroids: np.ndarray
    colours: np.ndarray
    shapes: list = None

    def __post_init__(self):
        if self.shapes is None:
            self.shapes = [None] * len(self.areas)

    @property
    def count(self) -> int:
        return len(self.areas)


def find_objects(frame, background=None, threshold: float = DEFAULT_THRESHOLD,
                 min_area: float = DEFAULT_MIN_AREA) -> FrameObjects:
    """Connected components of one ``(H, W, 3)`` frame far from ``background``."""
    img = _as_float(frame)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected a (H, W, 3) frame, got shape {img.shape}")
    bg = estimate_background(img) if background is None else np.asarray(background, np.float32)
    dist = np.linalg.norm(img - bg, axis=-1)
    mask = dist > threshold
    labels, n = ndimage.label(mask, structure=_EIGHT)
    h, w = mask.shape
    if n == 0:
        return FrameObjects(np.zeros(0), np.zeros((0, 2)), np.zeros((0, 3)))
    idx = np.arange(1, n + 1)
    areas = ndimage.sum_labels(mask, labels, idx)
    keep = areas >= min_area * h * w
    idx, areas = idx[keep], areas[keep]
    if len(idx) == 0:
        return FrameObjects(np.zeros(0), np.zeros((0, 2)), np.zeros((0, 3)))
    centroids = np.array(ndimage.center_of_mass(mask, labels, idx)).reshape(-1, 2) + 0.5
    # core of each object: pixels near its typical distance from the background (skips the
    # anti-aliased rim, whose colour is a blend with the background)
    colours, shapes = [], []
    for i in idx:
        comp = labels == i
        d = dist[comp]
        core = comp & (dist >= 0.85 * np.percentile(d, 90))
        colours.append(img[core].mean(0))
        shapes.append(classify_shape(comp))
    colours = np.stack(colours)
    order = np.argsort(-areas, kind="stable")
    return FrameObjects(areas[order].astype(np.float64), centroids[order], colours[order],
                        [shapes[k] for k in order])


def shape_overlaps(mask: np.ndarray) -> dict[str, float]:
    """IoU of one object's boolean ``(H, W)`` mask with an upright circle, square and triangle of
    its area centred on its centroid (template pixels: centres inside the shape)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        raise ValueError("shape_overlaps needs a mask with at least one pixel")
    area = float(len(ys))
    cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
    r = math.sqrt(area / math.pi)
    # a window that holds the object and every template (a triangle reaches 1.56 r from its centroid)
    h, w = mask.shape
    pad = int(math.ceil(1.6 * r)) + 1
    y0, y1 = max(0, min(ys.min(), int(cy) - pad)), min(h, max(ys.max() + 1, int(cy) + pad + 1))
    x0, x1 = max(0, min(xs.min(), int(cx) - pad)), min(w, max(xs.max() + 1, int(cx) + pad + 1))
    window = mask[y0:y1, x0:x1]
    py, px = np.meshgrid(np.arange(y0, y1) + 0.5 - cy, np.arange(x0, x1) + 0.5 - cx, indexing="ij")
    out = {}
    for shape in SHAPES:
        template = shape_distance(shape, px, py, r) < 0
        out[shape] = float((window & template).sum() / (window | template).sum())
    return out


def classify_shape(mask: np.ndarray) -> str:
    """``circle``, ``square`` or ``triangle``: the template of :func:`shape_overlaps` that overlaps
    the object's mask best."""
    overlaps = shape_overlaps(mask)
    return max(SHAPES, key=lambda shape: overlaps[shape])


def count_objects(frame, background=None, threshold: float = DEFAULT_THRESHOLD,
                  min_area: float = DEFAULT_MIN_AREA) -> int:
    """Number of objects in one frame (see :func:`find_objects`)."""
    return find_objects(frame, background, threshold, min_area).count


def _nearest_colour(rgb) -> str:
    names = list(COLOURS)
    d = [np.linalg.norm(np.asarray(rgb) - np.asarray(COLOURS[n])) for n in names]
    return names[int(np.argmin(d))]


def evaluate_video(frames, prompt: str | None = None, scene: Scene | None = None, background=None,
                   threshold: float = DEFAULT_THRESHOLD, min_area: float = DEFAULT_MIN_AREA) -> dict:
    """All ground-truth metrics of one video ``(F, H, W, 3)``.

    ``scene`` gives the exact true size; otherwise ``prompt`` gives colour and direction and the
    size is compared with the training range. Returns per-video numbers (NaN where undefined,
    e.g. colour error of a video with no object).
    """
    a = _as_float(frames)
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected a (F, H, W, 3) video, got shape {a.shape}")
    if scene is not None:
        shape, colour, direction = scene.shape, scene.colour, scene.direction
        size_lo = size_hi = scene.size
    elif prompt is not None:
        shape, colour, direction = parse_prompt(prompt)
        size_lo, size_hi = SIZE_RANGE
    else:
        raise ValueError("evaluate_video needs a prompt or a scene")
    f, h, w, _ = a.shape
    short = min(h, w)
    bg = estimate_background(a) if background is None else np.asarray(background, np.float32)
    objs = [find_objects(a[i], bg, threshold, min_area) for i in range(f)]
    counts = np.array([o.count for o in objs])

    radii, col_err, col_ok, shape_ok = [], [], [], []
    for o in objs:
        if o.count:
            r = math.sqrt(o.areas[0] / math.pi) / short
            radii.append(r)
            shape_ok.append(o.shapes[0] == shape)
            col_err.append(float(np.linalg.norm(o.colours[0] - np.asarray(COLOURS[colour]))))
            col_ok.append(_nearest_colour(o.colours[0]) == colour)
    radii = np.array(radii)
    if len(radii):
        scale_err = np.maximum(0.0, np.maximum(np.log(radii / size_hi), np.log(size_lo / radii)))
    else:
        scale_err = np.array([])

    stable = []
    for o1, o2 in zip(objs, objs[1:]):
        ok = o1.count == 1 and o2.count == 1
        if ok:
            ok = _nearest_colour(o1.colours[0]) == _nearest_colour(o2.colours[0])
            ok = ok and max(o1.areas[0], o2.areas[0]) <= 1.5 * min(o1.areas[0], o2.areas[0])
            ok = ok and float(np.hypot(*(o1.centroids[0] - o2.centroids[0]))) < 0.15 * short
        stable.append(bool(ok))

    direction_ok = axis_ok = travel = float("nan")
    single = [i for i in range(f) if counts[i] == 1]
    if len(single) >= 2:
        first, last = objs[single[0]].centroids[0], objs[single[-1]].centroids[0]
        dy, dx = last - first
        ex, ey = DIRECTIONS[direction]
        along, across = dx * ex + dy * ey, dx * ey - dy * ex
        direction_ok = float(along > 0 and abs(along) >= abs(across))
        # The axis alone is the time-symmetric half of the direction: a model that cannot tell the
        # first frame from the last can still move "left" objects horizontally.
        axis_ok = float(abs(along) >= abs(across))
        travel = float(np.hypot(dx, dy)) / short

    def mean(x):
        return float(np.mean(x)) if len(x) else float("nan")

    return {
        "frames": int(f),
        "height": int(h),
        "width": int(w),
        "objects_per_frame": float(counts.mean()),
        "one_object_rate": float((counts == 1).mean()),
        "no_object_rate": float((counts == 0).mean()),
        "object_radius": mean(radii),
        "scale_error": mean(scale_err),
        "colour_error": mean(col_err),
        "colour_accuracy": mean(col_ok),
        "shape_accuracy": mean(shape_ok),
        "temporal_stability": mean(stable),
        "direction_accuracy": direction_ok,
        "axis_accuracy": axis_ok,
        "travel": travel,
    }


def summarize(results: list[dict]) -> dict:
    """Mean of every numeric metric over videos (NaNs skipped), plus the count of videos."""
    if not results:
        raise ValueError("no results to summarize")
    keys = [k for k, v in results[0].items() if isinstance(v, float)]
    out = {"videos": len(results)}
    for k in keys:
        vals = np.array([r[k] for r in results], dtype=np.float64)
        vals = vals[~np.isnan(vals)]
        out[k] = float(vals.mean()) if len(vals) else float("nan")
    return out
