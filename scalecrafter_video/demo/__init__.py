"""The demo world: synthetic moving-shape scenes with exact ground truth, the small text-to-video
model trained on them, and the showcase behind ``scalecrafter-video demo``.

- :mod:`.scenes`: resolution-independent scenes from a prompt grammar (the ground truth);
- :mod:`.model`: the embedded model's components, tokenizer and on-disk layout (``DEMO_MODEL_DIR``);
- :mod:`.showcase`: Direct-Inf vs ScaleCrafter on the embedded model, side by side.

The per-frame metrics that score videos against this world live with the other metrics, in
:mod:`scalecrafter_video.metrics.ground_truth`.
"""

from .scenes import COLOURS, DIRECTIONS, SHAPES, Scene, parse_prompt, render_scene, sample_scene, scene_from_prompt

__all__ = ["COLOURS", "DIRECTIONS", "SHAPES", "Scene", "parse_prompt", "render_scene", "sample_scene",
           "scene_from_prompt"]
