"""One loader for every supported local model; all return ``pipe(...) -> uint8 (b, f, h, w, 3)``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelLoadError, NonFiniteError, ScaleCrafterError
from ..ops.pixels import unit_to_uint8
from .diffusers_video import FAMILIES, WrappedDiffusersPipeline
from .protocol import resolve_call

__all__ = ["ImagePipeline", "load_pipeline"]

VIDEO_CLASSES = {"TextToVideoSDPipeline", "TextToVideoPipeline", "VideoToVideoSDPipeline"}
IMAGE_CLASSES = {"StableDiffusionPipeline", "StableDiffusionXLPipeline"}
CHECKPOINT_SUFFIXES = {".ckpt", ".pt", ".pth", ".safetensors"}


class ImagePipeline(WrappedDiffusersPipeline):
    """Stable Diffusion (1.x/2.x/XL) behind the video call signature: one frame per sample.

    ScaleCrafter is applied to it (``.unet``, ``.scheduler``) and runs through diffusers' own
    ``__call__``, so this also shows the method works inside an unmodified diffusers pipeline.
    """

    def __init__(self, pipe):
        self.pipe = pipe
        self.vae_scale_factor = pipe.vae_scale_factor
        sample = pipe.unet.config.sample_size
        self.train_size = (sample * self.vae_scale_factor, sample * self.vae_scale_factor)
        self.defaults = {"num_frames": 1, "fps": 1, "guidance_scale": 7.5, "num_inference_steps": 50, "eta": 0.0}

    def check_size(self, height: int, width: int) -> None:
        from ..errors import ScaleCrafterError

        f = self.vae_scale_factor
        if height % f or width % f:
            raise ScaleCrafterError(f"height and width must be multiples of {f}, got {height}x{width}")

    @torch.no_grad()
    def __call__(self, prompt, negative_prompt=None, height=None, width=None, num_frames=None,
                 num_inference_steps=None, guidance_scale=None, eta=None, generator=None, progress=True,
                 chunk_size=None, tile_size=None, image=None):
        from ..errors import ScaleCrafterError

        if tile_size is not None:
            raise ScaleCrafterError("--tile-size is not supported for Stable Diffusion image models "
                                    "(diffusers' own pipe.enable_vae_tiling() is the image path)")
        if image is not None:
            raise ScaleCrafterError("Stable Diffusion image models take no input image here")
        if num_frames not in (None, 1):
            raise ScaleCrafterError(f"a Stable Diffusion image model makes one frame, not {num_frames}")
        height, width, _, steps, guidance = resolve_call(self, height, width, 1, num_inference_steps, guidance_scale)
        self.pipe.set_progress_bar_config(disable=not progress)
        images = self.pipe(
            prompt, negative_prompt=negative_prompt, height=height, width=width, num_inference_steps=steps,
            guidance_scale=guidance,
            eta=self.defaults["eta"] if eta is None else eta, generator=generator, output_type="np",
        ).images
        if not np.isfinite(images).all():
            raise NonFiniteError("non-finite image after sampling: guidance too large, or float16 overflow "
                                 "(try --dtype float32)")
        return unit_to_uint8(images)[:, None]


def _quiet_loading() -> None:
    """Weight-loading progress bars of transformers/diffusers are noise next to our own."""
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
    except (ImportError, AttributeError):  # pragma: no cover
        pass
    import diffusers

    diffusers.utils.logging.disable_progress_bar()


def load_pipeline(path, device="cpu", dtype=torch.float32, *, model_config=None, clip_path=None, motion_adapter=None):
    """Load a local model: a diffusers folder (text-to-video, AnimateDiff, Stable Video Diffusion,
    I2VGen-XL or Stable Diffusion; the family is read from ``model_index.json``), a Stable
    Diffusion (XL) folder plus a ``motion_adapter`` folder (AnimateDiff), or an LDM-style
    ``.ckpt`` with its YAML (``model_config``) for LVDM / VideoCrafter.

    Raises:
        ModelLoadError: missing path, a hub id (nothing is downloaded), or an unknown layout.
    """
    _quiet_loading()
    path = Path(path)
    if not path.exists():
        hint = " (model hubs are not used: pass a local folder)" if "/" in str(path) and not str(path).startswith((".", "/")) else ""
        raise ModelLoadError(f"model not found: {path}{hint}")
    if path.is_file():
        if path.suffix not in CHECKPOINT_SUFFIXES:
            raise ModelLoadError(f"{path}: expected a diffusers folder or a .ckpt checkpoint")
        if model_config is None:
            raise ModelLoadError(f"{path}: a checkpoint needs its YAML config (--model-config)")
        try:
            from ..models.ldm_pipeline import LDMVideoPipeline
        except ImportError as exc:  # pragma: no cover - depends on optional module
            raise ModelLoadError(f"LDM-style checkpoints are not supported in this build ({exc})") from None
        return LDMVideoPipeline.from_checkpoint(path, model_config, clip_path=clip_path, device=device, dtype=dtype)

    return _load_folder(path, device, dtype, motion_adapter)


def _load_folder(path: Path, device, dtype, motion_adapter):
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise ModelLoadError(f"{path} has no model_index.json: not a diffusers model folder")
    try:
        index = json.loads(index_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{index_file}: invalid JSON ({getattr(exc, 'msg', exc)})") from None
    class_name = index.get("_class_name", "") if isinstance(index, dict) else ""
    if motion_adapter is not None:
        adapter = Path(motion_adapter)
        if not (adapter / "config.json").is_file():
            raise ModelLoadError(f"--motion-adapter {adapter}: not a MotionAdapter folder (no config.json)")
        if class_name not in ("StableDiffusionPipeline", "StableDiffusionXLPipeline"):
            raise ModelLoadError(f"--motion-adapter goes with a Stable Diffusion (XL) folder; {path} is {class_name!r}")
    elif class_name not in set(FAMILIES) | VIDEO_CLASSES | IMAGE_CLASSES:
        raise ModelLoadError(
            f"{path}: unsupported pipeline class {class_name!r} "
            f"(supported: {', '.join(sorted(VIDEO_CLASSES | IMAGE_CLASSES | set(FAMILIES)))})"
        )
    try:
        with warnings.catch_warnings():  # diffusers' own deprecation notices (torch_dtype, ...) are not the user's
            warnings.simplefilter("ignore", FutureWarning)
            return _from_pretrained(path, class_name, device, dtype, motion_adapter)
    except ScaleCrafterError:
        raise
    except Exception as exc:  # noqa: BLE001 - truncated weights, missing files, bad configs: one line
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path}: could not load this {class_name} folder "
                             f"({type(exc).__name__}: {detail[:300]})") from exc


def _from_pretrained(path: Path, class_name: str, device, dtype, motion_adapter):
    if class_name in FAMILIES or motion_adapter is not None:
        from .diffusers_video import DiffusersVideoPipeline

        return DiffusersVideoPipeline.from_pretrained(path, device=device, dtype=dtype, motion_adapter=motion_adapter)
    if class_name in VIDEO_CLASSES:
        from .text_to_video import TextToVideoPipeline

        return TextToVideoPipeline.from_pretrained(path, device=device, dtype=dtype)
    import diffusers

    extra = {"safety_checker": None} if class_name == "StableDiffusionPipeline" else {}
    pipe = getattr(diffusers, class_name).from_pretrained(path, torch_dtype=dtype, local_files_only=True, **extra)
    return ImagePipeline(pipe.to(device))
