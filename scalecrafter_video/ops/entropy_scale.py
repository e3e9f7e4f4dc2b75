"""Attention entropy scaling (Attn-SF, Jin et al. 2023), the baseline ScaleCrafter compares with.

Self-attention logits are multiplied by ``sqrt(log_{N_train} N)``, where ``N`` is the layer's
token count at the current resolution and ``N_train = N / rho`` the count it had at the training
resolution (``rho`` = current / training pixel ratio). Scaling the query by that factor scales
the logits ``q k^T * scale`` identically, whatever attention kernel runs afterwards (PyTorch's
SDPA included, which ignores ``attn.scale`` in diffusers' default processor).
"""

from __future__ import annotations

import math

__all__ = ["entropy_scale"]


def entropy_scale(num_tokens: int, pixel_ratio: float) -> float:
    """``sqrt(log(N) / log(N / rho))``; 1 when the training token count would be < 2."""
    if num_tokens < 2 or pixel_ratio <= 0:
        return 1.0
    n_train = num_tokens / pixel_ratio
    if n_train < 2:
        return 1.0
    return math.sqrt(math.log(num_tokens) / math.log(n_train))
