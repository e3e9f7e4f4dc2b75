"""scalecrafter-video: training-free higher-resolution video and image generation (ScaleCrafter).

Public API::

    from scalecrafter_video import ScaleCrafterConfig, apply_scalecrafter, remove_scalecrafter

    config = ScaleCrafterConfig.auto(train_size=(256, 256), target_size=(512, 512))
    apply_scalecrafter(pipe, config)      # or a bare UNet
    frames = pipe(prompt, height=512, width=512).frames
    remove_scalecrafter(pipe)
"""

from .config import ScaleCrafterConfig, list_presets
from .errors import ConfigError, ModelLoadError, ScaleCrafterError
from .engine import apply_scalecrafter, compile_unet, remove_scalecrafter
from .trajectory import denoising_step

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "ModelLoadError",
    "ScaleCrafterConfig",
    "ScaleCrafterError",
    "apply_scalecrafter",
    "compile_unet",
    "denoising_step",
    "list_presets",
    "remove_scalecrafter",
]
