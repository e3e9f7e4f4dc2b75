"""Sampling loops and model loading (prompt -> latents -> frames)."""

from .diffusers_video import FAMILIES, DiffusersVideoPipeline
from .loading import ImagePipeline, load_pipeline
from .protocol import VideoPipeline
from .sampling import cfg_denoise, sample_loop
from .text_to_video import TextToVideoPipeline

__all__ = ["FAMILIES", "DiffusersVideoPipeline", "ImagePipeline", "TextToVideoPipeline", "VideoPipeline", "cfg_denoise", "load_pipeline", "sample_loop"]
