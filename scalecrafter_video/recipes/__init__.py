"""Recipes: what combines pipelines and the engine (the CLI and the web app call only these).

- :mod:`.generate`: one video (schedule for a pipeline and size, one seeded sample, file + sidecar);
- :mod:`.lr_guidance`: the paper's "Ours + LR" and the native + bicubic baseline;
- :mod:`.inputs`: checks of prompts, numbers, images and family options before anything runs;
- :mod:`.sidecar`: the one record written next to every output.
"""

from .generate import (GenerationResult, config_for, explicit_config, generate_video, method_label, run_generation,
                       sample_video)

__all__ = ["GenerationResult", "config_for", "explicit_config", "generate_video", "method_label", "run_generation",
           "sample_video"]
