"""The latent-diffusion 2D ``AutoencoderKL`` (``first_stage_model.*`` of LVDM / VideoCrafter checkpoints).

Written natively with the checkpoint's parameter names (``encoder.down.0.block.1.conv2``,
``decoder.mid.attn_1.q``, ``quant_conv`` ...). Video latents are decoded frame by frame in
chunks (:meth:`AutoencoderKL.decode_video`), so peak memory depends on the chunk size, not on
the number of frames.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..errors import ConfigError

__all__ = ["AutoencoderKL", "Decoder", "Encoder"]


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """norm-SiLU-conv3x3 twice with a 1x1 (``nin_shortcut``) or 3x3 (``conv_shortcut``) skip."""

    def __init__(self, in_channels: int, out_channels: int | None = None, conv_shortcut: bool = False, dropout=0.0):
        super().__init__()
        out_channels = out_channels or in_channels
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            if conv_shortcut:
                self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            else:
                self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if hasattr(self, "conv_shortcut"):
            x = self.conv_shortcut(x)
        elif hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels with 1x1-conv q, k, v, proj_out. ``(n, c, h, w)``."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        z = self.norm(x)
        # contiguous (n, 1, hw, c): scaled_dot_product_attention then uses its flash kernel on CPU,
        # never holding the (hw x hw) matrix (4 GiB at a 128x128 latent otherwise)
        q, k, v = (rearrange(m(z), "n c h w -> n 1 (h w) c").contiguous() for m in (self.q, self.k, self.v))
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "n 1 (h w) c -> n c h w", h=h, w=w)
        return x + self.proj_out(out)


def _attn(channels: int, attn_type: str) -> nn.Module:
    if attn_type == "vanilla":
        return AttnBlock(channels)
    if attn_type == "none":
        return nn.Identity()
    raise ConfigError(f"attn_type {attn_type!r} is not supported (use 'vanilla' or 'none')")


class _Down(nn.Module):
    """Stride-2 3x3 conv after zero padding right/bottom by one (or 2x2 average pooling)."""

    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x):
        if self.with_conv:
            return self.conv(F.pad(x, (0, 1, 0, 1)))
        return F.avg_pool2d(x, 2, 2)


class _Up(nn.Module):
    """Nearest x2 then an optional 3x3 conv."""

    def __init__(self, channels: int, with_conv: bool):
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x


def _check_attn_type(use_linear_attn: bool, attn_type: str) -> str:
    if use_linear_attn:
        raise ConfigError("linear attention in the autoencoder is not supported")
    return attn_type


class Encoder(nn.Module):
    """Image ``(n, in_channels, H, W)`` -> moments ``(n, 2 z_channels, H/2^L, W/2^L)`` (double_z)."""

    def __init__(
        self, *, ch, out_ch, ch_mult=(1, 2, 4, 8), num_res_blocks, attn_resolutions, dropout=0.0,
        resamp_with_conv=True, in_channels, resolution, z_channels, double_z=True, use_linear_attn=False,
        attn_type="vanilla", **ignored,
    ):
        super().__init__()
        attn_type = _check_attn_type(use_linear_attn, attn_type)
        ch_mult = tuple(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        res = resolution
        block_in = ch
        self.down = nn.ModuleList()
        for level, mult in enumerate(ch_mult):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks):
                stage.block.append(ResnetBlock(block_in, ch * mult, dropout=dropout))
                block_in = ch * mult
                if res in attn_resolutions:
                    stage.attn.append(_attn(block_in, attn_type))
            if level != len(ch_mult) - 1:
                stage.downsample = _Down(block_in, resamp_with_conv)
                res //= 2
            self.down.append(stage)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout=dropout)
        self.mid.attn_1 = _attn(block_in, attn_type)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout=dropout)
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn):
                    h = stage.attn[i](h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent ``(n, z_channels, h, w)`` -> image ``(n, out_ch, h 2^L, w 2^L)``."""

    def __init__(
        self, *, ch, out_ch, ch_mult=(1, 2, 4, 8), num_res_blocks, attn_resolutions, dropout=0.0,
        resamp_with_conv=True, in_channels, resolution, z_channels, give_pre_end=False, tanh_out=False,
        use_linear_attn=False, attn_type="vanilla", **ignored,
    ):
        super().__init__()
        attn_type = _check_attn_type(use_linear_attn, attn_type)
        ch_mult = tuple(ch_mult)
        self.give_pre_end = give_pre_end
        self.tanh_out = tanh_out
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout=dropout)
        self.mid.attn_1 = _attn(block_in, attn_type)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout=dropout)
        stages = []
        for level in reversed(range(len(ch_mult))):
            stage = nn.Module()
            stage.block, stage.attn = nn.ModuleList(), nn.ModuleList()
            for _ in range(num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, ch * ch_mult[level], dropout=dropout))
                block_in = ch * ch_mult[level]
                if res in attn_resolutions:
                    stage.attn.append(_attn(block_in, attn_type))
            if level != 0:
                stage.upsample = _Up(block_in, resamp_with_conv)
                res *= 2
            stages.insert(0, stage)
        self.up = nn.ModuleList(stages)  # index = resolution level, as in the checkpoints
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for stage in reversed(self.up):
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn):
                    h = stage.attn[i](h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        if self.give_pre_end:
            return h
        h = self.conv_out(F.silu(self.norm_out(h)))
        return torch.tanh(h) if self.tanh_out else h


class AutoencoderKL(nn.Module):
    """KL autoencoder: ``encoder``, ``quant_conv``, ``post_quant_conv``, ``decoder``.

    Built from the ``first_stage_config.params`` of an LDM YAML (``embed_dim``, ``ddconfig``;
    ``lossconfig`` and training keys are ignored).
    """

    def __init__(self, ddconfig: Mapping, embed_dim: int, **ignored):
        super().__init__()
        ddconfig = dict(ddconfig)
        if not ddconfig.get("double_z", True):
            raise ConfigError("AutoencoderKL needs ddconfig.double_z: true")
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        z = ddconfig["z_channels"]
        self.quant_conv = nn.Conv2d(2 * z, 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z, 1)
        self.embed_dim = embed_dim
        self.downsample_factor = 2 ** (len(tuple(ddconfig["ch_mult"])) - 1)

    def encode_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(n, 3, H, W)`` in [-1, 1] -> ``(mean, logvar)`` each ``(n, embed_dim, H/f, W/f)``."""
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(n, embed_dim, h, w)`` -> ``(n, 3, h f, w f)`` (roughly in [-1, 1])."""
        return self.decoder(self.post_quant_conv(z))

    @torch.no_grad()
    def decode_video(self, z: torch.Tensor, chunk_size: int = 1, on_chunk=None) -> torch.Tensor:
        """Decode ``(b, c, f, h, w)`` latents ``chunk_size`` frames at a time -> ``(b, 3, f, H, W)``.

        Only one chunk's activations are alive at a time; ``on_chunk(done, total)`` is called after
        each chunk (for progress bars).
        """
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        b, _, f, _, _ = z.shape
        flat = rearrange(z, "b c f h w -> (b f) c h w")
        out = None
        for start in range(0, flat.shape[0], chunk_size):
            frames = self.decode(flat[start : start + chunk_size])
            if out is None:
                out = frames.new_empty((flat.shape[0], *frames.shape[1:]))
            out[start : start + frames.shape[0]] = frames
            if on_chunk is not None:
                on_chunk(min(start + chunk_size, flat.shape[0]), flat.shape[0])
        return rearrange(out, "(b f) c h w -> b c f h w", b=b, f=f)
