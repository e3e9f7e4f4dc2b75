"""Inputs a model family needs beyond the prompt: the conditioning image and family options.

Checked before anything is sampled, with one clear error each: a missing or unreadable image, an
image given to a text-only model, no image for an image-to-video model, an option the model does
not take.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ScaleCrafterError

__all__ = ["check_model_inputs", "family_name", "load_image"]

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
        flags = ", ".join("--" + k.replace("_", "-").replace("fps", "cond-fps") for k in unknown)
        raise ScaleCrafterError(f"{flags}: not an option of {family_name(pipe)}"
                                + (f" (it takes {', '.join(accepted)})" if accepted else ""))
