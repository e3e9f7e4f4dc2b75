"""Synthetic data: resolution-independent moving-shape scenes with exact ground truth."""

from .scenes import (
    COLOURS,
    DIRECTIONS,
    SHAPES,
    Scene,
    parse_prompt,
    render_scene,
    sample_scene,
    scene_from_prompt,
)

__all__ = [
    "COLOURS",
    "DIRECTIONS",
    "SHAPES",
    "Scene",
    "parse_prompt",
    "render_scene",
    "sample_scene",
    "scene_from_prompt",
]
