"""Text-to-video for local diffusers folders (ModelScope, Zeroscope, the embedded demo model).

diffusers' ``TextToVideoSDPipeline`` is deprecated, so the project owns this loop; it reads the
same folder layout (``model_index.json`` + ``unet``/``scheduler``/``text_encoder``/``tokenizer``/
``vae``). A folder without ``vae`` is a pixel-space model whose samples live in [-1, 1].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from tqdm.auto import tqdm

from ..errors import ModelLoadError, ScaleCrafterError
from ..ops.pixels import signed_to_uint8
from .protocol import resolve_call
from .sampling import sample_loop

__all__ = ["TextToVideoPipeline"]

DEFAULTS_FILE = "scalecrafter_video.json"  # optional per-model defaults (num_frames, fps, guidance, steps)


class TextToVideoPipeline:
    """``pipe(prompt, height, width, num_frames) -> uint8 (b, f, h, w, 3)``.

    Attributes: ``unet`` (a video UNet taking ``(b, c, f, h, w)``), ``scheduler``, ``text_encoder``,
    ``tokenizer``, ``vae`` (or ``None``), ``train_size`` (native ``(H, W)`` pixels),
    ``vae_scale_factor``.
    """

    supports_lr_guidance = True  # restarts from given latents at a step (latents=, start_step=)

    def __init__(self, unet, scheduler, text_encoder, tokenizer, vae=None, defaults: dict | None = None):
        self.unet, self.scheduler, self.text_encoder, self.tokenizer, self.vae = (
            unet, scheduler, text_encoder, tokenizer, vae,
        )
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1) if vae is not None else 1
        sample = unet.config.sample_size
        sample = (sample, sample) if isinstance(sample, int) else tuple(sample)
        self.train_size = (sample[0] * self.vae_scale_factor, sample[1] * self.vae_scale_factor)
        self.defaults = {"num_frames": 16, "fps": 8, "guidance_scale": 9.0, "num_inference_steps": 50, "eta": 0.0}
        self.defaults.update(defaults or {})

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @classmethod
    def from_pretrained(cls, path, device="cpu", dtype=torch.float32) -> TextToVideoPipeline:
        from diffusers import DDIMScheduler, UNet3DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        path = Path(path)
        index = json.loads((path / "model_index.json").read_text())
        for part in ("unet", "scheduler", "text_encoder", "tokenizer"):
            if part not in index or not (path / part).is_dir():
                raise ModelLoadError(f"{path} is not a text-to-video folder: component '{part}' is missing")
        unet = UNet3DConditionModel.from_pretrained(path / "unet", torch_dtype=dtype)
        scheduler = DDIMScheduler.from_pretrained(path / "scheduler")
        text_encoder = CLIPTextModel.from_pretrained(path / "text_encoder", torch_dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer")
        vae = None
        if index.get("vae", [None])[0] is not None and (path / "vae").is_dir():
            from diffusers import AutoencoderKL

            vae = AutoencoderKL.from_pretrained(path / "vae", torch_dtype=dtype)
        defaults = json.loads((path / DEFAULTS_FILE).read_text()) if (path / DEFAULTS_FILE).is_file() else None
        pipe = cls(unet, scheduler, text_encoder, tokenizer, vae, defaults)
        return pipe.to(device)

    def to(self, device) -> TextToVideoPipeline:
        for part in (self.unet, self.text_encoder, self.vae):
            if part is not None:
                part.to(device).eval()
        return self

    # ------------------------------------------------------------------ pieces
    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """``(b, tokens, dim)`` text embeddings (last hidden state)."""
        tokens = self.tokenizer(
            prompts, padding="max_length", max_length=self.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        )
        return self.text_encoder(tokens.input_ids.to(self.device))[0]

    @torch.no_grad()
    def encode_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 ``(b, f, H, W, 3)`` frames -> model-space ``(b, c, f, H / s, W / s)`` (the inverse of
        :meth:`decode`: ``[-1, 1]`` pixels, or the VAE posterior's mean times its scaling factor)."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).float() / 127.5 - 1.0
        b, f = x.shape[:2]
        flat = rearrange(x, "b f h w c -> (b f) c h w").to(self.device, self.dtype)
        if self.vae is not None:
            scale = getattr(self.vae.config, "scaling_factor", 0.18215)
            flat = torch.cat([self.vae.encode(z.to(self.vae.dtype)).latent_dist.mean * scale for z in flat.split(8)])
        return rearrange(flat, "(b f) c h w -> b c f h w", b=b, f=f).to(self.dtype)

    def _unet_eps(self, x, t, context):
        return self.unet(x, t, encoder_hidden_states=context).sample

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, chunk_size: int = 8, tile_size: int | None = None) -> np.ndarray:
        """``(b, c, f, h, w)`` latents -> uint8 ``(b, f, H, W, 3)``, decoding ``chunk_size`` frames at a time.

        ``tile_size`` (latent pixels) switches on tiled decoding with GroupNorm statistics synchronized
        across tiles (:mod:`scalecrafter_video.tiled_decode`) for frames too large to decode at once.
        """
        frames = latents.shape[2]
        flat = rearrange(latents, "b c f h w -> (b f) c h w")
        if self.vae is None:
            images = flat
        else:
            scale = getattr(self.vae.config, "scaling_factor", 0.18215)
            if tile_size is None:
                def run(z):
                    return self.vae.decode(z).sample
            else:
                from ..tiled_decode import synced_tiled_decode

                def run(z):
                    return synced_tiled_decode(self.vae, z, tile_size)
            parts = [
                run(z.to(self.vae.dtype) / scale)
                for z in tqdm(flat.split(chunk_size), desc="decoding", disable=len(flat) <= chunk_size, leave=False)
            ]
            images = torch.cat(parts)
        return signed_to_uint8(rearrange(images, "(b f) c h w -> b f h w c", f=frames))

    def check_size(self, height: int, width: int) -> None:
        f = self.vae_scale_factor
        if height % f or width % f or height < f or width < f:
            raise ScaleCrafterError(
                f"height and width must be positive multiples of {f} (the VAE factor of this model), got {height}x{width}"
            )

    # ------------------------------------------------------------------ call
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        eta: float | None = None,
        generator: torch.Generator | None = None,
        progress: bool = True,
        latents: torch.Tensor | None = None,
        start_step: int = 0,
        output_type: str = "np",
        callback=None,
        chunk_size: int = 8,
        tile_size: int | None = None,
    ):
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        height, width, num_frames, steps, guidance = resolve_call(
            self, height, width, num_frames, num_inference_steps, guidance_scale)
        eta = self.defaults["eta"] if eta is None else eta
        if not 0 <= start_step < steps:
            raise ScaleCrafterError(f"start_step must be in [0, {steps}), got {start_step}")

        cond = self.encode_prompt(prompts)
        uncond = self.encode_prompt([negative_prompt or ""] * len(prompts)) if guidance > 1.0 else None
        shape = (
            len(prompts), self.unet.config.in_channels, num_frames,
            height // self.vae_scale_factor, width // self.vae_scale_factor,
        )
        if latents is None:
            latents = torch.randn(shape, generator=generator, device="cpu", dtype=torch.float32)
            latents = latents.to(self.device, self.dtype) * self.scheduler.init_noise_sigma
        elif tuple(latents.shape) != shape:
            raise ScaleCrafterError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        self.scheduler.set_timesteps(steps, device=self.device)
        latents = sample_loop(
            self._unet_eps, self.scheduler, latents.to(self.device, self.dtype), cond, uncond,
            guidance_scale=guidance, eta=eta, start_step=start_step, generator=generator,
            progress=progress, callback=callback,
        )
        if output_type == "latent":
            return latents
        return self.decode(latents, chunk_size=chunk_size, tile_size=tile_size)
