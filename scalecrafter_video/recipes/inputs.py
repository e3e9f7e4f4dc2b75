"""Inputs a model family needs beyond the prompt: the conditioning image and family options.

Checked before anything is sampled, with one clear error each: a missing or unreadable image, an
image given to a text-only model, no image for an image-to-video model, an option the model does
not take.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import ScaleCrafterError

# Family options (the pipelines' keyword) and the command-line flag that sets each.
OPTION_FLAGS = {
    "motion_bucket_id": "--motion-bucket-id",
    "fps": "--cond-fps",
    "noise_aug_strength": "--noise-aug-strength",
    "min_guidance_scale": "--min-guidance",
}

__all__ = ["OPTION_FLAGS", "check_model_inputs", "check_sampling_numbers", "check_text", "family_name", "load_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_image(path):
    """An RGB PIL image from a png / jpg file."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ScaleCrafterError(f"--image {path}: file not found")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise ScaleCrafterError(f"--image {path}: expected a .png or .jpg file")
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ScaleCrafterError(f"--image {path}: not a readable image ({type(exc).__name__})") from None


def family_name(pipe) -> str:
    """A short name of the model family (recorded in sidecars)."""
    family = getattr(pipe, "family", None)
    if family is not None:
        return getattr(family, "name", str(family))
    return type(pipe).__name__


def check_model_inputs(pipe, image, options: dict) -> None:
    """Refuse an image / option the model cannot use, or a missing image it needs."""
    needs = bool(getattr(pipe, "needs_image", False))
    if needs and image is None:
        raise ScaleCrafterError(f"{family_name(pipe)} is an image-to-video model: give the first frame with --image PATH")
    if not needs and image is not None:
        raise ScaleCrafterError(f"{family_name(pipe)} is a text-only model: --image is for image-to-video models "
                                "(Stable Video Diffusion, I2VGen-XL)")
    accepted = tuple(getattr(getattr(pipe, "family", None), "options", ()) or ())
    unknown = sorted(k for k in options if k not in accepted)
    if unknown:
        flags = ", ".join(OPTION_FLAGS.get(k, k) for k in unknown)
        raise ScaleCrafterError(f"{flags}: not an option of {family_name(pipe)}"
                                + (f" (it takes {', '.join(accepted)})" if accepted else ""))


def check_text(value, what: str = "--prompt") -> None:
    """A prompt must be encodable text (a non-UTF-8 command-line argument is not)."""
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ScaleCrafterError(f"{what} is not valid UTF-8 text") from None


def check_sampling_numbers(*, height=None, width=None, frames=None, steps=None, guidance=None, eta=None, fps=None,
                           seed=None, negative_prompt=None, max_steps=None) -> None:
    """Every numeric option checked before anything is sampled (``None`` = the model's default)."""
    for flag, value in (("--height", height), ("--width", width), ("--frames", frames), ("--steps", steps)):
        if value is not None and value < 1:
            raise ScaleCrafterError(f"{flag} must be a positive integer, got {value}")
    if steps is not None and max_steps is not None and steps > max_steps:
        raise ScaleCrafterError(f"--steps {steps} is more than the scheduler's {max_steps} training timesteps")
    if guidance is not None and not (math.isfinite(guidance) and guidance >= 1.0):
        raise ScaleCrafterError(f"--guidance must be a finite number >= 1 (1 = no classifier-free guidance), got {guidance}")
    if negative_prompt is not None and guidance is not None and guidance <= 1.0:
        raise ScaleCrafterError("--negative-prompt needs --guidance > 1 (with guidance 1 it has no effect)")
    if eta is not None and not (math.isfinite(eta) and eta >= 0):
        raise ScaleCrafterError(f"--eta must be a finite number >= 0, got {eta}")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise ScaleCrafterError(f"--fps must be a positive finite number, got {fps}")
    if seed is not None and not 0 <= seed < 2**64:
        raise ScaleCrafterError(f"--seed must be in [0, 2**64), got {seed}")
