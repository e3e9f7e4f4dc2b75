"""Moving-shape scenes rendered analytically at any resolution.

A scene is one object (circle, square or triangle) of one colour moving in a straight line on a
plain background. Every parameter is resolution independent:

* positions are fractions of the frame, ``(x, y)`` in ``[0, 1]`` (x to the right, y downwards);
* the object's size ``size`` is a fraction of the frame's *shorter* side; all shapes of one size
  have the same area, ``pi * (size * min(H, W))**2`` pixels, so a size error is a shape-free number;
* the motion is a displacement per frame, again as a fraction of the shorter side.

Rendering evaluates each shape's signed distance at pixel centres and converts it to coverage with a
one-pixel linear ramp (analytic anti-aliasing), so the same scene rendered at 32x32 and at 128x128
agrees after area downsampling up to the anti-aliasing error of the edge pixels.

Frames are ``(F, H, W, 3)`` float arrays in ``[0, 1]`` (:func:`render_scene`) or uint8
(``to_uint8``); the model sees ``x * 2 - 1``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import numpy as np

from ..ops.pixels import unit_to_uint8

from ..errors import ScaleCrafterError

__all__ = [
    "BACKGROUND",
    "BACKGROUND_RAMP",
    "background_at",
    "COLOURS",
    "DIRECTIONS",
    "SHAPES",
    "PromptError",
    "Scene",
    "parse_prompt",
    "prompt_vocabulary",
    "render_batch",
    "render_scene",
    "sample_scene",
    "scene_from_prompt",
    "shape_distance",
]

#: Plain background colour (RGB in [0, 1]): its value at the middle of a clip.
BACKGROUND = (0.08, 0.08, 0.10)
#: The background brightens by this much (RGB, [0, 1] units) from the first frame to the last. The
#: ramp is the world's arrow of time. A UNet3D's temporal attention has no frame positions, so in a
#: time-symmetric world its only clock would come from learning lopsided temporal convolutions, and
#: "moving left" would stay the time reversal of "moving right"; every clip's ramp makes it learn the
#: clock first (demo model v2: direction at chance without it). Far below the metrics' 0.3 threshold.
BACKGROUND_RAMP = 0.04

#: Object colours (RGB in [0, 1]); far from the background and from each other.
COLOURS = {
    "red": (0.92, 0.16, 0.14),
    "green": (0.15, 0.80, 0.22),
    "blue": (0.18, 0.35, 0.95),
    "yellow": (0.95, 0.88, 0.15),
}

SHAPES = ("circle", "square", "triangle")

#: Unit motion vectors in image coordinates (y grows downwards).
DIRECTIONS = {
    "left": (-1.0, 0.0),
    "right": (1.0, 0.0),
    "up": (0.0, -1.0),
    "down": (0.0, 1.0),
}

#: Ranges used by :func:`sample_scene` (fractions of the shorter side / of the frame).
SIZE_RANGE = (0.16, 0.22)
# Demo model v2's world: faster motion in a narrower box than v1's (0.025-0.04 per frame, midpoint in
# 0.32-0.68). At 32x32, v1's 1 px per frame moved the object less than its position was uncertain,
# so knowing the direction word barely lowered the training loss and the model left it unused.
SPEED_RANGE = (0.035, 0.05)
CENTRE_RANGE = (0.38, 0.62)

# Words allowed in a prompt besides the colour/shape/direction words.
_FILLER = ("a", "an", "the", "moving", "to", "towards")


class PromptError(ScaleCrafterError, ValueError):
    """A prompt the demo model cannot draw (unknown words, missing colour/shape/direction)."""


def prompt_vocabulary() -> list[str]:
    """Every word the demo prompt grammar knows, in a fixed order."""
    return list(_FILLER) + list(COLOURS) + list(SHAPES) + list(DIRECTIONS)


@dataclass(frozen=True)
class Scene:
    """One moving object. See the module docstring for units."""

    shape: str
    colour: str
    direction: str
    size: float  # equal-area radius as a fraction of the shorter frame side
    x0: float  # centre at frame 0, fraction of the width
    y0: float  # centre at frame 0, fraction of the height
    speed: float  # displacement per frame, fraction of the shorter side

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise PromptError(f"unknown shape {self.shape!r}; choose from {', '.join(SHAPES)}")
        if self.colour not in COLOURS:
            raise PromptError(f"unknown colour {self.colour!r}; choose from {', '.join(COLOURS)}")
        if self.direction not in DIRECTIONS:
            raise PromptError(f"unknown direction {self.direction!r}; choose from {', '.join(DIRECTIONS)}")
        if not self.size > 0:
            raise ValueError(f"size must be positive, got {self.size}")

    @property
    def prompt(self) -> str:
        return f"a {self.colour} {self.shape} moving {self.direction}"

    @property
    def rgb(self) -> tuple[float, float, float]:
        return COLOURS[self.colour]

    def centre(self, frame: int, height: int, width: int) -> tuple[float, float]:
        """Object centre ``(x, y)`` in pixels (continuous; pixel i covers [i, i+1))."""
        short = min(height, width)
        dx, dy = DIRECTIONS[self.direction]
        x = self.x0 * width + dx * self.speed * short * frame
        y = self.y0 * height + dy * self.speed * short * frame
        return x, y

    def area_pixels(self, height: int, width: int) -> float:
        """True object area in pixels at a resolution (all shapes share it)."""
        return math.pi * (self.size * min(height, width)) ** 2

    def to_dict(self) -> dict:
        return asdict(self)


def parse_prompt(prompt: str) -> tuple[str, str, str]:
    """``"a red circle moving left"`` -> ``("circle", "red", "left")``.

    Raises :class:`PromptError` naming any word outside the grammar, or a missing/duplicated part.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError('empty prompt; use the form "a {colour} {shape} moving {direction}"')
    words = re.findall(r"[a-z]+", prompt.lower())
    if re.sub(r"[a-z\s,.]", "", prompt.lower()):
        bad = sorted(set(re.sub(r"[a-z\s,.]", "", prompt.lower())))
        raise PromptError(f"prompt {prompt!r} has characters outside the demo grammar: {''.join(bad)!r}")
    known = set(prompt_vocabulary())
    unknown = [w for w in words if w not in known]
    if unknown:
        raise PromptError(
            f"prompt {prompt!r} has words the demo model does not know: {', '.join(unknown)}. "
            f"Use the form \"a {{colour}} {{shape}} moving {{direction}}\" with colour in "
            f"{'/'.join(COLOURS)}, shape in {'/'.join(SHAPES)}, direction in {'/'.join(DIRECTIONS)}"
        )

    def one(kind: str, options) -> str:
        found = [w for w in words if w in options]
        if len(found) != 1:
            what = "no" if not found else f"{len(found)} ({', '.join(found)})"
            raise PromptError(f"prompt {prompt!r} names {what} {kind}; it needs exactly one of {'/'.join(options)}")
        return found[0]

    return one("shape", SHAPES), one("colour", COLOURS), one("direction", DIRECTIONS)


def canonical_prompt(prompt: str) -> str:
    """The training form of a prompt: ``a {colour} {shape} moving {direction}``."""
    shape, colour, direction = parse_prompt(prompt)
    return f"a {colour} {shape} moving {direction}"


def all_prompts() -> list[str]:
    """Every prompt of the grammar in its training form, colour outermost, direction innermost."""
    return [f"a {c} {s} moving {d}" for c in COLOURS for s in SHAPES for d in DIRECTIONS]


def _trajectory_start(rng: np.random.Generator, direction: str, speed: float, frames: int, aspect: float,
                      centre_range=CENTRE_RANGE):
    """Start so that the trajectory's midpoint is uniform in the central box."""
    dx, dy = DIRECTIONS[direction]
    mx, my = rng.uniform(*centre_range, size=2)
    half = speed * (frames - 1) / 2
    # displacement is in units of the shorter side; convert to fractions of width/height
    short_over_w = min(1.0, 1.0 / aspect)  # aspect = W / H
    short_over_h = min(1.0, aspect)
    return mx - dx * half * short_over_w, my - dy * half * short_over_h


def sample_scene(rng: np.random.Generator, frames: int = 8, aspect: float = 1.0, *, speed_range=SPEED_RANGE,
                 centre_range=CENTRE_RANGE, **fixed) -> Scene:
    """A random scene; keyword arguments (``shape``, ``colour``, ``direction``, ...) fix fields.
    ``speed_range`` / ``centre_range`` replace the world's ranges (demo model v1 was trained on others)."""
    shape = fixed.get("shape") or SHAPES[rng.integers(len(SHAPES))]
    colour = fixed.get("colour") or list(COLOURS)[rng.integers(len(COLOURS))]
    direction = fixed.get("direction") or list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
    size = float(fixed.get("size", rng.uniform(*SIZE_RANGE)))
    speed = float(fixed.get("speed", rng.uniform(*speed_range)))
    x0, y0 = _trajectory_start(rng, direction, speed, frames, aspect, centre_range)
    return Scene(shape, colour, direction, size, float(fixed.get("x0", x0)), float(fixed.get("y0", y0)), speed)


def scene_from_prompt(prompt: str, rng: np.random.Generator, frames: int = 8, aspect: float = 1.0) -> Scene:
    """A random scene matching a prompt (position, size and speed drawn from ``rng``)."""
    shape, colour, direction = parse_prompt(prompt)
    return sample_scene(rng, frames, aspect, shape=shape, colour=colour, direction=direction)


# --- signed distances (pixels; negative inside) -------------------------------------------

def _sd_circle(px, py, r):
    return np.hypot(px, py) - r


def _sd_box(px, py, half):
    qx, qy = np.abs(px) - half, np.abs(py) - half
    outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
    inside = np.minimum(np.maximum(qx, qy), 0)
    return outside + inside


def _sd_polygon(px, py, verts):
    """Exact signed distance to a convex polygon (vertices counter-clockwise in y-down coords ok)."""
    d = np.full(px.shape, np.inf)
    inside = np.ones(px.shape, bool)
    n = len(verts)
    for i in range(n):
        ax, ay = verts[i]
        bx, by = verts[(i + 1) % n]
        ex, ey = bx - ax, by - ay
        wx, wy = px - ax, py - ay
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1)
        d = np.minimum(d, np.hypot(wx - ex * t, wy - ey * t))
        cross = ex * wy - ey * wx
        inside &= cross >= 0
    if not inside.any():
        # orientation may be the other way round
        inside = np.ones(px.shape, bool)
        for i in range(n):
            ax, ay = verts[i]
            bx, by = verts[(i + 1) % n]
            inside &= (bx - ax) * (py - ay) - (by - ay) * (px - ax) <= 0
    return np.where(inside, -d, d)


def _triangle_vertices(r_equal_area: float):
    """Upright equilateral triangle centred on its centroid with area pi * r**2."""
    circum = r_equal_area * math.sqrt(4 * math.pi / (3 * math.sqrt(3)))
    angles = [-math.pi / 2, -math.pi / 2 + 2 * math.pi / 3, -math.pi / 2 + 4 * math.pi / 3]
    return [(circum * math.cos(a), circum * math.sin(a)) for a in angles]


def shape_distance(shape: str, px: np.ndarray, py: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (pixels, negative inside) of offsets ``(px, py)`` from the centre to the
    upright ``shape`` of area ``pi r^2`` centred there (its centroid, for the triangle)."""
    if shape == "circle":
        return _sd_circle(px, py, r)
    if shape == "square":
        return _sd_box(px, py, r * math.sqrt(math.pi) / 2)
    if shape == "triangle":
        return _sd_polygon(px, py, _triangle_vertices(r))
    raise PromptError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")


def coverage(scene: Scene, frame: int, height: int, width: int) -> np.ndarray:
    """Anti-aliased object coverage in ``[0, 1]``, shape ``(H, W)``."""
    cx, cy = scene.centre(frame, height, width)
    r = scene.size * min(height, width)
    ys = np.arange(height, dtype=np.float64)[:, None] + 0.5 - cy
    xs = np.arange(width, dtype=np.float64)[None, :] + 0.5 - cx
    px, py = np.broadcast_arrays(xs, ys)
    return np.clip(0.5 - shape_distance(scene.shape, px, py, r), 0.0, 1.0)


def background_at(frame: int, frames: int, background=BACKGROUND, ramp: float = BACKGROUND_RAMP) -> np.ndarray:
    """The background colour of one frame: ``background`` at mid-clip, ``ramp`` brighter at the end
    than at the start (:data:`BACKGROUND_RAMP`)."""
    phase = frame / (frames - 1) - 0.5 if frames > 1 else 0.0
    return np.asarray(background, np.float32) + np.float32(ramp * phase)


def render_scene(scene: Scene, height: int, width: int, frames: int = 8, background=BACKGROUND,
                 ramp: float = BACKGROUND_RAMP) -> np.ndarray:
    """Render ``frames`` frames at ``height x width``: float32 ``(F, H, W, 3)`` in ``[0, 1]``
    (``ramp`` 0: the time-symmetric world demo model v1 was trained on)."""
    if height < 1 or width < 1 or frames < 1:
        raise ValueError(f"need positive height/width/frames, got {height}x{width}x{frames}")
    fg = np.asarray(scene.rgb, np.float32)
    out = np.empty((frames, height, width, 3), np.float32)
    for f in range(frames):
        bg = background_at(f, frames, background, ramp)
        a = coverage(scene, f, height, width).astype(np.float32)[..., None]
        out[f] = bg * (1 - a) + fg * a
    return out


def render_batch(scenes, height: int, width: int, frames: int = 8, ramp: float = BACKGROUND_RAMP) -> np.ndarray:
    """Render several scenes: float32 ``(B, F, H, W, 3)`` in ``[0, 1]``."""
    return np.stack([render_scene(s, height, width, frames, ramp=ramp) for s in scenes])


to_uint8 = unit_to_uint8  # float frames in [0, 1] -> uint8 (rounded, clipped)
