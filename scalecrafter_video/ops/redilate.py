"""Re-dilated convolution on the spatial axes (ScaleCrafter, Sec. 3.2).

A k x k kernel is run with dilation ``d`` on its two spatial axes only. For a
fractional ``d`` the integer dilation ``d' = ceil(d)`` is applied to the input
bilinearly resized by ``f = d' / d``, so that the effective dilation measured in
original pixels is ``d' / f = d``; the output is resized back to exactly the size
the *undilated* convolution produces (conv arithmetic, so stride-2 layers give
``ceil(H / 2)`` on odd sizes and skip connections keep matching).

The factor may differ per axis, ``(dh, dw)``: each axis follows the same rule on its own (integer
part, resize factor), so ``(1, 3)`` dilates only the width.

Works for 4D inputs ``(n, c, h, w)`` and for 5D ``(b, c, f, h, w)`` inputs of
``Conv3d`` whose kernel has spatial extent; the frame axis keeps its own kernel,
stride, padding and dilation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

__all__ = ["as_axes", "conv_output_size", "redilated_conv", "split_dilation"]


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    """Output length of a zero-padded convolution along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def split_dilation(d: float) -> tuple[int, float]:
    """``d -> (d', f)`` with integer dilation ``d' = ceil(d)`` and resize factor ``f = d'/d >= 1``."""
    if not d >= 1:
        raise ValueError(f"dilation must be >= 1, got {d}")
    d_int = math.ceil(d - 1e-9)
    return d_int, d_int / d


def as_axes(d) -> tuple[float, float]:
    """A factor as ``(dh, dw)``: a number applies to both axes."""
    if isinstance(d, (tuple, list)):
        dh, dw = d
        return float(dh), float(dw)
    return float(d), float(d)


def _resize_spatial(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False, no antialias) resize of the last two axes; per frame for 5D."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if x.ndim == 4:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    frames = x.shape[2]
    y = F.interpolate(rearrange(x, "b c f h w -> (b f) c h w"), size=size, mode="bilinear", align_corners=False)
    return rearrange(y, "(b f) c h w -> b c f h w", f=frames)


def redilated_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    groups: int,
    dilation: float | tuple[float, float],
    reference_kernel: tuple[int, int] | None = None,
    temporal_dilation: int = 1,
) -> torch.Tensor:
    """Convolve ``x`` with ``weight`` re-dilated by ``dilation`` on the spatial axes.

    Args:
        x: ``(n, c, h, w)`` or ``(b, c, f, h, w)``.
        weight: ``(o, c / groups, kh, kw)`` or ``(o, c / groups, kt, kh, kw)``; may be a
            dispersed (larger) kernel, see ``reference_kernel``.
        stride, padding: the layer's original values (2 or 3 entries, frame axis first for 5D).
        dilation: spatial dilation factor ``d >= 1``, or ``(dh, dw)`` per axis; fractional values
            are allowed.
        reference_kernel: spatial kernel of the original layer, which fixes the output size
            (defaults to ``weight``'s own spatial size).
        temporal_dilation: the frame-axis dilation of a 5D layer, kept as it was.

    Returns:
        The output, whose spatial size equals the original undilated layer's output.
    """
    kh, kw = weight.shape[-2:]
    rh, rw = reference_kernel or (kh, kw)
    sh, sw = stride[-2:]
    ph, pw = padding[-2:]
    h, w = x.shape[-2:]
    out_size = (conv_output_size(h, rh, sh, ph), conv_output_size(w, rw, sw, pw))

    (dh, fh), (dw, fw) = (split_dilation(v) for v in as_axes(dilation))
    if fh != 1.0 or fw != 1.0:
        x = _resize_spatial(x, (round(fh * h), round(fw * w)))
    pad_h, pad_w = dh * (kh - 1) // 2, dw * (kw - 1) // 2
    if x.ndim == 4:
        y = F.conv2d(x, weight, bias, (sh, sw), (pad_h, pad_w), (dh, dw), groups)
    else:
        y = F.conv3d(
            x, weight, bias, (stride[0], sh, sw), (padding[0], pad_h, pad_w), (temporal_dilation, dh, dw), groups
        )
    return _resize_spatial(y, out_size)
