"""Model outputs to uint8 frames, one conversion per value space (round half to even, then clip).

- ``[-1, 1]`` (latent decoders and pixel-space models): ``(x + 1) * 127.5``;
- ``[0, 1]`` (diffusers' ``output_type="np"``, the demo scenes): ``x * 255``;
- ``[0, 255]`` floats (frames resized after decoding): as they are.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["float255_to_uint8", "signed_to_uint8", "unit_to_uint8"]


def signed_to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[-1, 1]`` tensor (any shape) -> uint8 array of the same shape."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def unit_to_uint8(x) -> np.ndarray:
    """``[0, 1]`` array or tensor (any shape) -> uint8 array of the same shape."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return (np.clip(np.asarray(x), 0, 1) * 255).round().astype(np.uint8)


def float255_to_uint8(x: torch.Tensor) -> np.ndarray:
    """``[0, 255]`` float tensor (any shape) -> uint8 array of the same shape."""
    return x.round().clamp(0, 255).to(torch.uint8).cpu().numpy()
