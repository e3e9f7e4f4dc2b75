"""Attn-SF: spatial self-attention logits scaled by ``sqrt(log_{N_train} N)``.

The hook scales the query projection's output, which scales ``q k^T`` by the same factor and so
also works under PyTorch SDPA (diffusers' default processor ignores ``attn.scale``). Only the
attentions :func:`~scalecrafter_video.engine.layers.spatial_self_attentions` returns are hooked:
attention over frames keeps its scale.
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..ops.entropy_scale import entropy_scale
from .layers import spatial_self_attentions

__all__ = ["hook_self_attentions"]


def _hook(state):
    def hook(module, inputs, output):
        factor = entropy_scale(output.shape[-2], state.pixel_ratio)
        if factor == 1.0:
            return None
        state.acted = True
        return output * factor

    return hook


def hook_self_attentions(unet: nn.Module, state) -> list:
    """Register the query hooks; returns their handles."""
    handles = []
    for name, attn in spatial_self_attentions(unet):
        if getattr(attn, "norm_q", None) is not None:
            raise ConfigError(f"{name}: Attn-SF with query normalisation (norm_q) is not supported")
        handles.append(attn.to_q.register_forward_hook(_hook(state)))
    return handles
