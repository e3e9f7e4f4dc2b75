"""Flags shared by several subcommands (``generate``, ``render``)."""

from __future__ import annotations

from ..recipes.inputs import OPTION_FLAGS


def add_model_arguments(parser) -> None:
    """Flags of the model families."""
    parser.add_argument("--image", help="first frame (png/jpg) for image-to-video models (SVD, I2VGen-XL)")
    parser.add_argument("--motion-adapter", help="AnimateDiff: a local MotionAdapter folder, with --model a Stable "
                                                 "Diffusion (XL) folder")
    parser.add_argument("--motion-bucket-id", type=int, help="SVD: amount of motion (default 127)")
    parser.add_argument("--cond-fps", type=int, help="SVD / I2VGen-XL: the fps the model is conditioned on")
    parser.add_argument("--noise-aug-strength", type=float, help="SVD: noise added to the conditioning image (0.02)")
    parser.add_argument("--min-guidance", type=float, help="SVD: guidance at the first frame (default 1.0); "
                                                           "--guidance is the last frame's")


def model_options(args) -> dict:
    """The family options given on the command line (only those set), keyed as the pipelines take them."""
    values = {key: getattr(args, flag[2:].replace("-", "_")) for key, flag in OPTION_FLAGS.items()}
    return {k: v for k, v in values.items() if v is not None}
