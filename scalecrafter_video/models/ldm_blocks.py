"""Building blocks shared by the LDM-style video UNets (LVDM, VideoCrafter).

Parameter names follow the latent-diffusion checkpoint layout (``to_q``, ``to_out.0``,
``ff.net.0.proj``, ``relative_position_k.embeddings_table`` ...) so that checkpoints load
by name; the code itself is written for this project.

Axis vocabulary: ``b`` batch, ``c`` channels, ``f`` frames, ``h``/``w`` latent rows/columns,
``n`` tokens, ``d`` channels per head.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..errors import ModelLoadError

__all__ = [
    "Attention",
    "BasicTransformerBlock",
    "FeedForward",
    "GroupNorm32",
    "RelativePosition",
    "load_state_dict_strict",
    "timestep_embedding",
    "zero_",
]


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(t w_i), sin(t w_i)]`` with ``w_i = max_period^(-i / (dim // 2))``.

    Args:
        timesteps: ``(n,)`` integer or fractional steps.
        dim: embedding width (an odd width gets one zero column).

    Returns:
        ``(n, dim)`` float32 tensor.
    """
    half = dim // 2
    exponent = torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    freqs = torch.exp(-math.log(max_period) * exponent)
    angles = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and cast back (works on 4D and 5D inputs)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).to(x.dtype)


def zero_(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` in place and return it."""
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
    return module


class RelativePosition(nn.Module):
    """Learned relative-position table (Shaw et al. 2018), clipped to ``max_relative_position``.

    ``forward(len_q, len_k)`` returns ``(len_q, len_k, num_units)`` with entry ``[i, j]`` =
    ``table[clamp(j - i, -m, m) + m]``.
    """

    def __init__(self, num_units: int, max_relative_position: int):
        super().__init__()
        self.num_units = num_units
        self.max_relative_position = max_relative_position
        self.embeddings_table = nn.Parameter(torch.empty(2 * max_relative_position + 1, num_units))
        nn.init.xavier_uniform_(self.embeddings_table)

    def forward(self, length_q: int, length_k: int) -> torch.Tensor:
        m = self.max_relative_position
        device = self.embeddings_table.device
        offsets = torch.arange(length_k, device=device)[None, :] - torch.arange(length_q, device=device)[:, None]
        return self.embeddings_table[offsets.clamp(-m, m) + m]


class Attention(nn.Module):
    """Multi-head (cross-)attention over token sequences.

    ``x``: ``(b, n, query_dim)``; ``context``: ``(b, m, context_dim)`` or ``None`` (self-attention).
    Options used by the video models:

    * ``relative_position``: add learned relative-position terms to the logits and the values
      (temporal attention of LVDM and VideoCrafter1);
    * ``img_cross_attention``: the context's tokens after the first ``text_context_len`` are image
      tokens attended by separate ``to_k_ip``/``to_v_ip`` projections, added to the output;
    * ``mask``: ``(b, n, m)`` with 1 = may attend (causal temporal attention).
    """

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        relative_position: bool = False,
        temporal_length: int | None = None,
        img_cross_attention: bool = False,
        text_context_len: int = 77,
    ):
        super().__init__()
        inner = heads * dim_head
        context_dim = query_dim if context_dim is None else context_dim
        self.heads = heads
        self.dim_head = dim_head
        self.scale = dim_head**-0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))
        self.img_cross_attention = img_cross_attention
        self.text_context_len = text_context_len
        self.image_cross_attention_scale = 1.0
        if img_cross_attention:
            self.to_k_ip = nn.Linear(context_dim, inner, bias=False)
            self.to_v_ip = nn.Linear(context_dim, inner, bias=False)
        self.relative_position = relative_position
        if relative_position:
            if temporal_length is None:
                raise ValueError("relative-position attention needs temporal_length")
            self.relative_position_k = RelativePosition(dim_head, temporal_length)
            self.relative_position_v = RelativePosition(dim_head, temporal_length)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        # contiguous: lets scaled_dot_product_attention pick its memory-efficient (flash) kernel on CPU
        # instead of materialising the (n x m) attention matrix
        return rearrange(t, "b n (h d) -> b h n d", h=self.heads).contiguous()

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        context = x if context is None else context
        image_tokens = None
        if self.img_cross_attention:
            context, image_tokens = context[:, : self.text_context_len], context[:, self.text_context_len :]
        q, k, v = self._heads(self.to_q(x)), self._heads(self.to_k(context)), self._heads(self.to_v(context))
        if not self.relative_position and mask is None:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            logits = torch.einsum("bhid,bhjd->bhij", q, k) * self.scale
            if self.relative_position:
                rel_k = self.relative_position_k(q.shape[2], k.shape[2])  # (i, j, d)
                logits = logits + torch.einsum("bhid,ijd->bhij", q, rel_k) * self.scale
            if mask is not None:
                keep = (mask > 0.5)[:, None]
                logits = logits.masked_fill(~keep, -torch.finfo(logits.dtype).max)
            weights = logits.softmax(dim=-1)
            out = torch.einsum("bhij,bhjd->bhid", weights, v)
            if self.relative_position:
                rel_v = self.relative_position_v(q.shape[2], v.shape[2])
                out = out + torch.einsum("bhij,ijd->bhid", weights, rel_v)
        out = rearrange(out, "b h n d -> b n (h d)")
        if image_tokens is not None:
            k_ip, v_ip = self._heads(self.to_k_ip(image_tokens)), self._heads(self.to_v_ip(image_tokens))
            out_ip = rearrange(F.scaled_dot_product_attention(q, k_ip, v_ip), "b h n d -> b n (h d)")
            out = out + self.image_cross_attention_scale * out_ip
        return self.to_out(out)


class GEGLU(nn.Module):
    """``a * gelu(g)`` with ``[a, g] = proj(x)``."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, 2 * dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(gate)


class FeedForward(nn.Module):
    """Transformer MLP: ``net = [GEGLU | Linear+GELU, Dropout, Linear]``."""

    def __init__(self, dim: int, mult: int = 4, glu: bool = True, dropout: float = 0.0):
        super().__init__()
        inner = dim * mult
        first = GEGLU(dim, inner) if glu else nn.Sequential(nn.Linear(dim, inner), nn.GELU())
        self.net = nn.Sequential(first, nn.Dropout(dropout), nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    """Pre-norm block: self-attention, cross-attention (self when no context), GEGLU MLP.

    ``x``: ``(b, n, dim)``; returns the same shape.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        d_head: int,
        dropout: float = 0.0,
        context_dim: int | None = None,
        disable_self_attn: bool = False,
        img_cross_attention: bool = False,
        relative_position: bool = False,
        temporal_length: int | None = None,
    ):
        super().__init__()
        rel = dict(relative_position=relative_position, temporal_length=temporal_length)
        self.disable_self_attn = disable_self_attn
        self.attn1 = Attention(dim, context_dim if disable_self_attn else None, n_heads, d_head, dropout, **rel)
        self.ff = FeedForward(dim, glu=True, dropout=dropout)
        self.attn2 = Attention(dim, context_dim, n_heads, d_head, dropout, img_cross_attention=img_cross_attention, **rel)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None):
        x = x + self.attn1(self.norm1(x), context=context if self.disable_self_attn else None, mask=mask)
        x = x + self.attn2(self.norm2(x), context=context, mask=mask)
        return x + self.ff(self.norm3(x))


# ---------------------------------------------------------------------------------------------- loading
def _summarise(keys: Iterable[str], limit: int = 5) -> str:
    keys = sorted(keys)
    head = ", ".join(keys[:limit])
    return head + (f" (and {len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_dict_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``module``; any missing/unexpected key or shape mismatch is a
    :class:`ModelLoadError` naming the keys (``what`` says which part of the checkpoint)."""
    own = module.state_dict()
    missing = set(own) - set(state)
    unexpected = set(state) - set(own)
    if missing:
        raise ModelLoadError(f"{what}: missing key(s) {_summarise(missing)}")
    if unexpected:
        raise ModelLoadError(f"{what}: unexpected key(s) {_summarise(unexpected)}")
    bad = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in own.items() if tuple(state[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise ModelLoadError(f"{what}: shape mismatch for {_summarise(bad, 3)}")
    module.load_state_dict(dict(state), strict=True)
