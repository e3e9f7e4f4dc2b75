"""Generate one video: schedule -> patched UNet -> sampler -> frames -> file + sidecar.

The recipe layer is where pipelines and the engine meet (the pipelines never import the engine):
:func:`config_for` completes a schedule for a pipeline and size, :func:`sample_video` switches it on
for one seeded sample and off again, :func:`run_generation` does what ``scalecrafter-video generate``
does with an already loaded pipeline (the web app keeps one loaded), :func:`generate_video` loads the
model first. Every argument is a plain value; nothing here knows about ``argparse``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import ScaleCrafterConfig
from ..errors import ScaleCrafterError

__all__ = ["GenerationResult", "config_for", "explicit_config", "generate_video", "method_label", "run_generation",
           "sample_video"]


def explicit_config(*, config: str | None = None, preset: str | None = None,
                    method: str | None = None) -> ScaleCrafterConfig | None:
    """The schedule named by a YAML path or a preset (checked before any model is loaded), else None
    (``config`` None or ``"auto"``: the automatic schedule, built once the model is known)."""
    overrides = {"method": method} if method else {}
    if preset:
        return ScaleCrafterConfig.preset(preset, **overrides)
    if config and config != "auto":
        return ScaleCrafterConfig.from_yaml(config, **overrides)
    return None


def config_for(pipe, height: int, width: int, config: ScaleCrafterConfig | None = None, *,
               method: str | None = None) -> ScaleCrafterConfig:
    """``config`` completed from the pipeline (training size, VAE factor), or the paper's automatic
    schedule for this pipeline and target size when ``config`` is None."""
    from ..engine import unet_levels

    if config is None:
        overrides = {"method": method} if method else {}
        config = ScaleCrafterConfig.auto(pipe.train_size, (height, width), num_levels=unet_levels(pipe.unet),
                                         **overrides)
    if config.train_size is None:
        config.train_size = tuple(pipe.train_size)
    if config.vae_scale_factor is None:
        config.vae_scale_factor = pipe.vae_scale_factor
    return config


def sample_video(pipe, config: ScaleCrafterConfig, prompt: str, seed: int, *, lr_guidance: float | None = None,
                 **call_kwargs) -> np.ndarray:
    """One seeded sample with ``config`` switched on, then off again: uint8 ``(f, h, w, 3)``.

    ``call_kwargs`` go to the pipeline (``height``, ``width``, ``num_frames``, ``num_inference_steps``,
    ``guidance_scale``, ``chunk_size``, ``tile_size``, ``progress``, family options, ...).
    ``lr_guidance``: fraction of the steps re-run at the target size from the upsampled native sample
    (see :func:`~scalecrafter_video.recipes.lr_guidance.generate_with_lr_guidance`).
    """
    import torch

    from ..engine import apply_scalecrafter, remove_scalecrafter

    if lr_guidance is not None:
        from .lr_guidance import generate_with_lr_guidance

        if not getattr(pipe, "supports_lr_guidance", False):
            raise ScaleCrafterError(f"--lr-guidance is supported for diffusers text-to-video folders (it re-noises with "
                                    f"the pipeline's scheduler), not for {type(pipe).__name__}")
        for key in ("chunk_size", "tile_size"):
            if call_kwargs.pop(key, None) is not None:
                raise ScaleCrafterError(f"--{key.replace('_', '-')} cannot be combined with --lr-guidance yet")
        generator = torch.Generator("cpu").manual_seed(seed)
        height, width = call_kwargs.pop("height"), call_kwargs.pop("width")
        return generate_with_lr_guidance(pipe, prompt, height, width, config, lr_guidance, generator=generator,
                                         **call_kwargs)[0]
    apply_scalecrafter(pipe, config)
    try:
        generator = torch.Generator("cpu").manual_seed(seed)
        return pipe(prompt, generator=generator, **call_kwargs)[0]
    finally:
        remove_scalecrafter(pipe)


def method_label(config: ScaleCrafterConfig, lr_guidance: float | None = None) -> str:
    """``Direct-Inf``, ``Attn-SF``, ``ScaleCrafter`` (``+ LR`` with LR guidance): the names used in panels."""
    name = {"scalecrafter": "ScaleCrafter", "attn-sf": "Attn-SF", "direct": "Direct-Inf"}[config.method]
    return f"{name} + LR" if lr_guidance is not None else name


def check_request(*, prompt: str, out, overwrite: bool = False, negative_prompt: str | None = None,
                  chunk_size: int | None = None, tile_size: int | None = None, **numbers) -> Path:
    """Everything about a request that needs no model: the texts, every number (``numbers``: height,
    width, frames, steps, guidance, eta, fps, seed; ``None`` = the model's), the decode options and
    the output location (with the killed-run sweep). Returns the output path."""
    from .inputs import check_sampling_numbers, check_text

    check_text(prompt)
    check_text(negative_prompt, "--negative-prompt")
    check_sampling_numbers(**numbers, negative_prompt=negative_prompt)
    for key, value in (("chunk_size", chunk_size), ("tile_size", tile_size)):
        if value is not None and value < 1:
            raise ScaleCrafterError(f"--{key.replace('_', '-')} must be a positive integer, got {value}")
    return prepare_output(out, overwrite=overwrite)


def prepare_output(out, *, overwrite: bool = False) -> Path:
    """Check ``out`` and its sidecar before anything is loaded, and sweep a killed run's temporaries."""
    from ..export import check_output_path, sweep_stale_temporaries

    out_path = check_output_path(out, overwrite=overwrite)
    check_output_path(str(out_path) + ".json", overwrite=overwrite, what="sidecar")
    for target in (out_path, Path(str(out_path) + ".json")):
        sweep_stale_temporaries(target)
    return out_path


@dataclass
class GenerationResult:
    """What :func:`run_generation` wrote: the output, its sidecar record and the frames (uint8 ``(f, h, w, 3)``)."""

    path: Path
    sidecar_path: Path
    record: dict
    video: np.ndarray
    config: ScaleCrafterConfig


def run_generation(pipe, *, prompt: str, out, model_name=None, negative_prompt: str | None = None,
                   height: int | None = None, width: int | None = None, frames: int | None = None,
                   config: ScaleCrafterConfig | None = None, method: str | None = None, seed: int = 0,
                   steps: int | None = None, guidance: float | None = None, eta: float | None = None,
                   fps: float | None = None, image=None, image_path=None, options: dict | None = None,
                   motion_adapter=None, chunk_size: int | None = None, tile_size: int | None = None,
                   overwrite: bool = False, compare: bool = False, lr_guidance: float | None = None,
                   progress: bool = True, started: float | None = None, device=None, dtype=None) -> GenerationResult:
    """Sample with a loaded pipeline and write ``out`` plus ``<out>.json`` (atomically).

    ``config`` None means the automatic schedule for this size (with ``method`` if given);
    ``compare`` also renders Direct-Inf with the same seed and writes both side by side. Sizes,
    frames, steps, guidance, eta, fps default to the model's (``None``; never 0). ``device`` / ``dtype``
    are recorded in the sidecar (default: those of the UNet's weights).
    """
    from ..export import check_free_space, side_by_side, write_json, write_video
    from .inputs import check_model_inputs, check_sampling_numbers, family_name
    from .sidecar import run_record, weights_placement

    started = time.perf_counter() if started is None else started
    out_path = check_request(prompt=prompt, out=out, overwrite=overwrite, negative_prompt=negative_prompt,
                             chunk_size=chunk_size, tile_size=tile_size, height=height, width=width, frames=frames,
                             steps=steps, guidance=guidance, eta=eta, fps=fps, seed=seed)
    options = dict(options or {})
    check_model_inputs(pipe, image, options)
    check_sampling_numbers(steps=steps,
                           max_steps=getattr(getattr(pipe.scheduler, "config", None), "num_train_timesteps", None))
    height = pipe.train_size[0] if height is None else height
    width = pipe.train_size[1] if width is None else width
    pipe.check_size(height, width)
    num_frames = pipe.defaults.get("num_frames", 1) if frames is None else frames
    check_free_space(out_path, num_frames * (2 if compare else 1), height, width)
    config = config_for(pipe, height, width, config, method=method)
    call = dict(negative_prompt=negative_prompt, height=height, width=width, num_frames=frames,
                num_inference_steps=steps, guidance_scale=guidance, eta=eta, progress=progress, **options)
    if image is not None:
        call["image"] = image
    if chunk_size is not None:
        call["chunk_size"] = chunk_size
    if tile_size is not None:
        call["tile_size"] = tile_size
    video = sample_video(pipe, config, prompt, seed, lr_guidance=lr_guidance, **call)
    if compare:
        baseline = sample_video(pipe, config.replace(method="direct"), prompt, seed, **call)
        video = side_by_side([baseline, video], labels=["Direct-Inf", method_label(config, lr_guidance)])
    fps = pipe.defaults.get("fps", 8) if fps is None else fps
    written = write_video(video, out_path, fps=fps, overwrite=overwrite)
    placement = weights_placement(pipe)
    record = run_record(
        prompt=prompt, negative_prompt=negative_prompt, seed=seed, model=model_name, family=family_name(pipe),
        height=height, width=width, frames=int(video.shape[0]), fps=fps,
        steps=pipe.defaults.get("num_inference_steps") if steps is None else steps,
        guidance=pipe.defaults.get("guidance_scale") if guidance is None else guidance,
        eta=pipe.defaults.get("eta") if eta is None else eta, dtype=dtype or placement["dtype"],
        device=device or placement["device"],
        config=config.to_dict(), seconds=round(time.perf_counter() - started, 2),
        compare=compare, lr_guidance=lr_guidance, image=None if image_path is None else str(image_path),
        motion_adapter=None if motion_adapter is None else str(motion_adapter), options=options,
        compiled=getattr(pipe.unet, "_compiled_call_impl", None) is not None,  # set by nn.Module.compile
    )
    sidecar = write_json(Path(str(written) + ".json"), record, overwrite=overwrite)
    return GenerationResult(written, sidecar, record, video, config)


def generate_video(*, model, prompt: str, out, device: str = "auto", dtype: str = "auto", model_config=None,
                   clip=None, motion_adapter=None, image=None, config: str | None = None, preset: str | None = None,
                   method: str | None = None, overwrite: bool = False, compile: bool = False,
                   **kwargs) -> GenerationResult:
    """Load a local model and run :func:`run_generation`; every check that needs no model (output
    location, schedule file or preset, image file) happens before the model loads.

    ``model``: a diffusers folder or an LVDM / VideoCrafter ``.ckpt`` (with ``model_config``,
    ``clip``); ``image``: a png / jpg path for image-to-video models; ``config``: a schedule YAML
    path or ``"auto"``; ``preset``: a shipped schedule name; ``compile``: ``torch.compile`` the UNet
    (:func:`~scalecrafter_video.engine.compile_unet`: one graph per phase, none per step). Other
    keywords: :func:`run_generation`.
    """
    from ..pipelines import load_pipeline
    from ..runtime import resolve_device, resolve_dtype
    from .inputs import load_image

    started = time.perf_counter()
    request = {k: kwargs.get(k) for k in ("negative_prompt", "chunk_size", "tile_size", "height", "width", "frames",
                                          "steps", "guidance", "eta", "fps", "seed")}
    check_request(prompt=prompt, out=out, overwrite=overwrite, **request)
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    schedule = explicit_config(config=config, preset=preset, method=method)
    image_value = load_image(image) if image is not None else None
    pipe = load_pipeline(model, device=torch_device, dtype=torch_dtype, model_config=model_config, clip_path=clip,
                         motion_adapter=motion_adapter)
    if compile:
        from ..engine import compile_unet

        compile_unet(pipe)
    return run_generation(pipe, prompt=prompt, out=out, model_name=model, config=schedule, method=method,
                          image=image_value, image_path=image, motion_adapter=motion_adapter, overwrite=overwrite,
                          started=started, device=torch_device, dtype=torch_dtype, **kwargs)
