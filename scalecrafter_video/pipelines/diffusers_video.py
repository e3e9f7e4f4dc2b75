"""The UNet video pipelines diffusers maintains, behind the project's pipeline call.

``AnimateDiffPipeline`` / ``AnimateDiffSDXLPipeline`` (text-to-video, a motion adapter on a
Stable Diffusion UNet), ``StableVideoDiffusionPipeline`` (image-to-video, EDM / Euler) and
``I2VGenXLPipeline`` (text + image to video) run through their own ``__call__``; ScaleCrafter is
applied to the wrapped pipeline (its ``.unet`` and ``.scheduler``), so the engine reads the step
and the CFG layout from the pipeline itself.

``pipe(prompt, height, width, num_frames, ...) -> uint8 (b, f, h, w, 3)`` like every pipeline here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import NonFiniteError, ScaleCrafterError
from ..ops.pixels import signed_to_uint8, unit_to_uint8
from .protocol import resolve_call

__all__ = ["FAMILIES", "DiffusersVideoPipeline", "Family"]


@dataclass(frozen=True)
class Family:
    """What the toolkit knows about one diffusers video family."""

    name: str
    pipeline_class: str
    native_size: tuple[int, int] | None  # None: the UNet's sample_size x the VAE factor
    needs_image: bool
    takes_prompt: bool
    defaults: dict = field(default_factory=dict)
    options: tuple[str, ...] = ()  # model-specific __call__ options a user may set


FAMILIES = {
    f.pipeline_class: f
    for f in (
        Family("animatediff", "AnimateDiffPipeline", None, False, True,
               {"num_frames": 16, "fps": 8, "guidance_scale": 7.5, "num_inference_steps": 25, "eta": 0.0}),
        Family("animatediff-sdxl", "AnimateDiffSDXLPipeline", None, False, True,
               {"num_frames": 16, "fps": 8, "guidance_scale": 8.0, "num_inference_steps": 25, "eta": 0.0}),
        Family("svd", "StableVideoDiffusionPipeline", (576, 1024), True, False,
               {"num_frames": 14, "fps": 7, "guidance_scale": 3.0, "num_inference_steps": 25, "eta": 0.0},
               ("motion_bucket_id", "fps", "noise_aug_strength", "min_guidance_scale")),
        Family("i2vgen-xl", "I2VGenXLPipeline", (704, 1280), True, True,
               {"num_frames": 16, "fps": 16, "guidance_scale": 9.0, "num_inference_steps": 50, "eta": 0.0},
               ("fps",)),
    )
}

DEFAULTS_FILE = "scalecrafter_video.json"  # optional per-model overrides (train_size, num_frames, ...)


def _to_uint8(frames) -> np.ndarray:
    """diffusers' ``output_type="np"`` frames, floats in [0, 1] ``(b, f, h, w, 3)`` -> uint8."""
    frames = np.asarray(frames)
    if not np.isfinite(frames).all():
        raise NonFiniteError(f"non-finite frames ({int((~np.isfinite(frames)).sum())} NaN/inf values) after sampling: "
                             "guidance too large, or float16 overflow (try --dtype float32)")
    return unit_to_uint8(frames)


class WrappedDiffusersPipeline:
    """The parts of a wrapped diffusers pipeline (``self.pipe``) that ScaleCrafter reads: the UNet,
    the scheduler (the step) and the CFG flag (the batch layout)."""

    @property
    def unet(self):
        return self.pipe.unet

    @property
    def scheduler(self):
        return self.pipe.scheduler

    @property
    def do_classifier_free_guidance(self):
        return self.pipe.do_classifier_free_guidance

    @property
    def vae(self):
        return self.pipe.vae


class DiffusersVideoPipeline(WrappedDiffusersPipeline):
    """A diffusers video pipeline with the project's call signature.

    Attributes: ``pipe`` (the diffusers pipeline: apply ScaleCrafter to this wrapper or to it),
    ``family`` (:class:`Family`), ``train_size`` native ``(H, W)`` pixels, ``vae_scale_factor``,
    ``defaults``.
    """

    def __init__(self, pipe, family: Family, defaults: dict | None = None):
        self.pipe = pipe
        self.family = family
        self.vae_scale_factor = pipe.vae_scale_factor
        overrides = dict(defaults or {})
        size = overrides.pop("train_size", None) or family.native_size
        if size is None:
            sample = pipe.unet.config.sample_size
            sample = (sample, sample) if isinstance(sample, int) else tuple(sample)
            size = (sample[0] * self.vae_scale_factor, sample[1] * self.vae_scale_factor)
        self.train_size = tuple(int(v) for v in size)
        self.defaults = {**family.defaults, **overrides}
        self.needs_image = family.needs_image

    @classmethod
    def from_pretrained(cls, path, device="cpu", dtype=torch.float32, motion_adapter=None) -> DiffusersVideoPipeline:
        """Load a saved family folder, or a Stable Diffusion (XL) folder plus a ``motion_adapter`` folder."""
        import diffusers

        path = Path(path)
        class_name = json.loads((path / "model_index.json").read_text()).get("_class_name", "")
        kwargs = dict(torch_dtype=dtype, local_files_only=True)
        if motion_adapter is not None:
            adapter = diffusers.MotionAdapter.from_pretrained(motion_adapter, torch_dtype=dtype, local_files_only=True)
            class_name = {"StableDiffusionPipeline": "AnimateDiffPipeline",
                          "StableDiffusionXLPipeline": "AnimateDiffSDXLPipeline"}.get(class_name, class_name)
            kwargs["motion_adapter"] = adapter
        family = FAMILIES[class_name]
        pipe = getattr(diffusers, class_name).from_pretrained(path, **kwargs)
        defaults = json.loads((path / DEFAULTS_FILE).read_text()) if (path / DEFAULTS_FILE).is_file() else None
        return cls(pipe.to(device), family, defaults)

    def check_size(self, height: int, width: int) -> None:
        f = self.vae_scale_factor
        if height <= 0 or width <= 0 or height % f or width % f:
            raise ScaleCrafterError(f"height and width must be positive multiples of {f}, got {height}x{width}")

    @torch.no_grad()
    def __call__(self, prompt=None, negative_prompt=None, height=None, width=None, num_frames=None,
                 num_inference_steps=None, guidance_scale=None, eta=None, generator=None, progress=True,
                 image=None, chunk_size=None, tile_size=None, **options):
        """Sample ``uint8 (b, f, h, w, 3)`` frames through the wrapped pipeline's own ``__call__``.

        ``image`` (PIL) conditions image-to-video families; ``chunk_size`` is the frames per VAE
        call; ``tile_size`` (latent pixels) decodes SVD videos in synced spatial tiles;
        ``options`` are the family's own settings (:attr:`Family.options`).
        """
        fam = self.family
        unknown = sorted(set(options) - set(fam.options))
        if unknown:
            raise ScaleCrafterError(f"{fam.name} does not take option(s) {', '.join(unknown)}"
                                    + (f" (it takes {', '.join(fam.options)})" if fam.options else ""))
        if fam.needs_image and image is None:
            raise ScaleCrafterError(f"{fam.name} is an image-to-video model: give an input image (--image PATH)")
        if not fam.needs_image and image is not None:
            raise ScaleCrafterError(f"{fam.name} is a text-to-video model: it takes no input image")
        if tile_size is not None and fam.name != "svd":
            raise ScaleCrafterError(f"--tile-size is supported for SVD's temporal decoder, not for {fam.name} "
                                    "(use --chunk-size to bound decoding memory)")
        height, width, num_frames, steps, guidance = resolve_call(
            self, height, width, num_frames, num_inference_steps, guidance_scale)
        d = self.defaults
        call = dict(height=height, width=width, num_frames=num_frames,
                    num_inference_steps=steps, generator=generator, output_type="np")
        self.pipe.set_progress_bar_config(disable=not progress)
        if fam.name == "svd":
            call.update(image=image, max_guidance_scale=guidance,
                        min_guidance_scale=options.get("min_guidance_scale", 1.0),
                        fps=int(options.get("fps", d["fps"])),
                        motion_bucket_id=int(options.get("motion_bucket_id", 127)),
                        noise_aug_strength=float(options.get("noise_aug_strength", 0.02)),
                        decode_chunk_size=chunk_size or call["num_frames"])
            if tile_size is not None:
                call["output_type"] = "latent"
        else:
            call.update(prompt=prompt, negative_prompt=negative_prompt, guidance_scale=guidance,
                        eta=d["eta"] if eta is None else eta)
            if chunk_size is not None:
                call["decode_chunk_size"] = chunk_size
        if fam.name == "i2vgen-xl":
            call.update(image=image, target_fps=int(options.get("fps", d["fps"])),
                        clip_skip=None)  # its clip_skip=1 default reads a text-model layout newer transformers lack
            # I2VGen-XL samples its image latents from the global RNG: seed it from the generator, locally.
            with torch.random.fork_rng(devices=[]):
                if generator is not None:
                    torch.manual_seed(generator.initial_seed())
                frames = self.pipe(**call).frames
        else:
            frames = self.pipe(**call).frames
        if call["output_type"] == "latent":
            if not torch.isfinite(frames).all():
                raise NonFiniteError("non-finite latents after sampling: guidance too large, or float16 overflow")
            return self._tiled_decode(frames, tile_size)
        return _to_uint8(frames)

    def _tiled_decode(self, latents: torch.Tensor, tile_size: int) -> np.ndarray:
        """SVD latents ``(b, f, c, h, w)`` -> uint8 frames, spatial tiles with every frame intact."""
        from einops import rearrange

        from ..tiled_decode import synced_tiled_decode_temporal

        vae = self.pipe.vae
        frames = latents.shape[1]
        z = rearrange(latents, "b f c h w -> (b f) c h w").to(vae.dtype) / vae.config.scaling_factor
        images = synced_tiled_decode_temporal(vae, z, tile_size, num_frames=frames)
        images = rearrange(images, "(b f) c h w -> b f h w c", f=frames)
        return signed_to_uint8(images)
