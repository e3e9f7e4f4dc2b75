"""LVDM text-to-video UNet (He et al., "Latent Video Diffusion Models", 2022), written natively.

The network works on 5D latents ``(b, c, f, h, w)`` throughout: every convolution is an
``nn.Conv3d`` with kernel ``(kernel_size_t, 3, 3)`` (the released configs use
``kernel_size_t: 1``, i.e. purely spatial ``(1, 3, 3)`` kernels), GroupNorms see all frames of a
sample at once, and temporal modelling comes only from the temporal self-attentions inside
:class:`SpatialTemporalTransformer` (relative positions clipped at ``temporal_length``).

Parameter names and shapes equal those of ``lvdm.models.modules.openaimodel3d.UNetModel`` for
the same constructor keywords, so LVDM checkpoints load strictly
(``model.diffusion_model.*`` of ``models/t2v/model.ckpt``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from ..errors import ConfigError
from .ldm_blocks import Attention, FeedForward, GroupNorm32, timestep_embedding, zero_

__all__ = ["SpatialTemporalTransformer", "UNetModel"]


def _activation(kind: str) -> nn.Module:
    if kind == "silu":
        return nn.SiLU()
    if kind == "leaky_relu":
        return nn.LeakyReLU()
    raise ConfigError(f"nonlinearity_type must be 'silu' or 'leaky_relu', got {kind!r}")


def _conv(cin: int, cout: int, kt: int, pt: int, stride=1) -> nn.Conv3d:
    """Conv3d with kernel ``(kt, 3, 3)`` and padding ``(pt, 1, 1)``."""
    return nn.Conv3d(cin, cout, (kt, 3, 3), stride=stride, padding=(pt, 1, 1))


class _EmbedBlock(nn.Module):
    """Marker: ``forward(x, emb)`` takes the timestep embedding."""


class Upsample(nn.Module):
    """Nearest x2 on ``h, w`` (frames kept), then an optional ``(kt, 3, 3)`` conv."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None, kernel_size_t=1, padding_t=0):
        super().__init__()
        self.channels = channels
        self.use_conv = use_conv
        if use_conv:
            self.conv = _conv(channels, out_channels or channels, kernel_size_t, padding_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f, h, w = x.shape[2:]
        x = F.interpolate(x, (f, 2 * h, 2 * w), mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """Stride ``(1, 2, 2)`` conv (``op``), or average pooling when ``use_conv`` is false."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None, kernel_size_t=1, padding_t=0):
        super().__init__()
        out_channels = out_channels or channels
        if use_conv:
            self.op = _conv(channels, out_channels, kernel_size_t, padding_t, stride=(1, 2, 2))
        else:
            if out_channels != channels:
                raise ConfigError("a pooling downsampler cannot change the channel count")
            self.op = nn.AvgPool3d((1, 2, 2), (1, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(_EmbedBlock):
    """Residual block on ``(b, c, f, h, w)``; GroupNorm statistics span all frames of a sample.

    ``emb``: ``(b, emb_channels)`` or per-frame ``(b, f, emb_channels)``.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_conv: bool = False,
        use_scale_shift_norm: bool = False,
        up: bool = False,
        down: bool = False,
        kernel_size_t: int = 1,
        padding_t: int = 0,
        nonlinearity_type: str = "silu",
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.out_channels = out_channels
        self.use_scale_shift_norm = use_scale_shift_norm
        kt, pt = kernel_size_t, padding_t
        self.in_layers = nn.Sequential(
            GroupNorm32(32, channels), _activation(nonlinearity_type), _conv(channels, out_channels, kt, pt)
        )
        self.updown = up or down
        if up:
            self.h_upd = Upsample(channels, False)
            self.x_upd = Upsample(channels, False)
        elif down:
            self.h_upd = Downsample(channels, False)
            self.x_upd = Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            _activation(nonlinearity_type),
            nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels),
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(32, out_channels),
            _activation(nonlinearity_type),
            nn.Dropout(dropout),
            zero_(_conv(out_channels, out_channels, kt, pt)),
        )
        if out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = _conv(channels, out_channels, kt, pt)
        else:
            self.skip_connection = nn.Conv3d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        e = self.emb_layers(emb).to(h.dtype)
        e = rearrange(e, "b f c -> b c f 1 1") if e.dim() == 3 else rearrange(e, "b c -> b c 1 1 1")
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[0](h) * (1 + scale) + shift
            h = self.out_layers[1:](h)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class BasicTransformerBlockST(nn.Module):
    """Spatial self-attn -> temporal self-attn -> spatial cross-attn -> temporal self-attn -> MLP.

    ``x``: ``(b, c, f, h, w)``; ``context``: ``(b, n, context_dim)`` shared by all frames of a sample.
    Spatial attention runs on ``((b f), (h w), c)``, temporal attention on ``((b h w), f, c)``.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        d_head: int,
        dropout: float = 0.0,
        context_dim: int | None = None,
        gated_ff: bool = True,
        temporal_length: int | None = None,
        use_relative_position: bool = True,
    ):
        super().__init__()
        self.attn1 = Attention(dim, None, n_heads, d_head, dropout)
        self.attn2 = Attention(dim, context_dim, n_heads, d_head, dropout)
        self.ff = FeedForward(dim, glu=gated_ff, dropout=dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        rel = dict(relative_position=use_relative_position, temporal_length=temporal_length)
        self.attn1_tmp = Attention(dim, None, n_heads, d_head, dropout, **rel)
        self.attn2_tmp = Attention(dim, None, n_heads, d_head, dropout, **rel)
        for attn in (self.attn1_tmp, self.attn2_tmp):  # temporal attention starts as a no-op
            for lin in (attn.to_q, attn.to_k, attn.to_v, attn.to_out[0]):
                zero_(lin)
        self.norm4 = nn.LayerNorm(dim)
        self.norm5 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, c, f, h, w = x.shape
        spatial, temporal = "(b f) (h w) c", "(b h w) f c"
        x = rearrange(x, f"b c f h w -> {spatial}")
        x = x + self.attn1(self.norm1(x))
        x = rearrange(x, f"{spatial} -> {temporal}", b=b, f=f, h=h, w=w)
        x = x + self.attn1_tmp(self.norm4(x))
        x = rearrange(x, f"{temporal} -> {spatial}", b=b, f=f, h=h, w=w)
        ctx = None if context is None else repeat(context, "b n c -> (b f) n c", f=f)
        x = x + self.attn2(self.norm2(x), context=ctx)
        x = rearrange(x, f"{spatial} -> {temporal}", b=b, f=f, h=h, w=w)
        x = x + self.attn2_tmp(self.norm5(x))
        x = x + self.ff(self.norm3(x))
        return rearrange(x, f"{temporal} -> b c f h w", b=b, f=f, h=h, w=w)


class SpatialTemporalTransformer(nn.Module):
    """GroupNorm (over all frames) -> 1x1x1 ``proj_in`` -> ST blocks -> zero-init ``proj_out`` + residual.

    ``x``: ``(b, c, f, h, w)`` -> same shape.
    """

    def __init__(
        self,
        in_channels: int,
        n_heads: int,
        d_head: int,
        depth: int = 1,
        dropout: float = 0.0,
        context_dim: int | None = None,
        temporal_length: int | None = None,
        use_relative_position: bool = True,
    ):
        super().__init__()
        inner = n_heads * d_head
        self.norm = nn.GroupNorm(32, in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv3d(in_channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlockST(
                inner,
                n_heads,
                d_head,
                dropout=dropout,
                context_dim=context_dim,
                temporal_length=temporal_length,
                use_relative_position=use_relative_position,
            )
            for _ in range(depth)
        )
        self.proj_out = zero_(nn.Conv3d(inner, in_channels, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.proj_in(self.norm(x))
        for block in self.transformer_blocks:
            h = block(h, context=context)
        return x + self.proj_out(h)


class TimestepEmbedSequential(nn.Sequential):
    """Runs its layers in order, giving ResBlocks the embedding and transformers the context."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, _EmbedBlock):
                x = layer(x, emb)
            elif isinstance(layer, SpatialTemporalTransformer):
                x = layer(x, context)
            else:
                x = layer(x)
        return x


def _as_list(value):
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        try:
            return list(value)  # omegaconf ListConfig and other iterables
        except TypeError:
            return value
    return list(value)


class UNetModel(nn.Module):
    """LVDM 3D UNet with spatial-temporal transformers.

    Constructor keywords are those of LVDM's ``UNetModel``. Only the text-to-video variant
    (``use_temporal_transformer: true``, ``dims: 3``) is implemented: the unconditional
    ``STAttentionBlock`` models need LVDM's 3D autoencoder, which this project does not ship.

    ``forward(x, timesteps, time_emb_replace=None, context=None, y=None)``:
        x: ``(b, in_channels, f, h, w)`` latents; timesteps: ``(b,)``;
        context: ``(b, n, context_dim)`` text tokens; returns ``(b, out_channels, f, h, w)``.
    """

    def __init__(
        self,
        image_size,
        in_channels,
        model_channels,
        out_channels,
        num_res_blocks,
        attention_resolutions,
        dropout=0,
        channel_mult=(1, 2, 4, 8),
        conv_resample=True,
        dims=3,
        num_classes=None,
        use_checkpoint=False,
        use_fp16=False,
        num_heads=-1,
        num_head_channels=-1,
        num_heads_upsample=-1,
        use_scale_shift_norm=False,
        resblock_updown=False,
        transformer_depth=1,
        context_dim=None,
        legacy=True,
        kernel_size_t=1,
        padding_t=1,
        use_temporal_transformer=False,
        temporal_length=None,
        use_relative_position=False,
        nonlinearity_type="silu",
        ST_transformer_module="attention_temporal",
        ST_transformer_class="SpatialTemporalTransformer",
        **kwargs,
    ):
        super().__init__()
        if not use_temporal_transformer:
            raise ConfigError(
                "only LVDM's text-to-video UNet (use_temporal_transformer: true) is supported; "
                "the unconditional STAttentionBlock models are not"
            )
        if dims != 3:
            raise ConfigError(f"LVDM's UNet needs dims: 3 (Conv3d with (kt, 3, 3) kernels), got {dims}")
        if ST_transformer_class != "SpatialTemporalTransformer" or ST_transformer_module != "attention_temporal":
            raise ConfigError(
                f"unsupported spatial-temporal transformer {ST_transformer_module}.{ST_transformer_class}"
            )
        if context_dim is None:
            raise ConfigError("the temporal transformer needs context_dim (the text encoder's width)")
        if num_heads == -1 and num_head_channels == -1:
            raise ConfigError("either num_heads or num_head_channels must be set")
        unknown = set(kwargs)
        if unknown:
            raise ConfigError(f"unsupported UNetModel keyword(s): {', '.join(sorted(unknown))}")
        if use_relative_position and temporal_length is None:
            raise ConfigError("use_relative_position needs temporal_length")

        channel_mult = tuple(_as_list(channel_mult))
        attention_resolutions = tuple(_as_list(attention_resolutions))
        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_res_blocks = num_res_blocks
        self.attention_resolutions = attention_resolutions
        self.channel_mult = channel_mult
        self.num_classes = num_classes
        self.temporal_length = temporal_length
        self.use_relative_position = use_relative_position
        self.dtype = torch.float16 if use_fp16 else torch.float32

        kt, pt = kernel_size_t, padding_t
        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, emb_dim), _activation(nonlinearity_type), nn.Linear(emb_dim, emb_dim)
        )
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_dim)

        def res(cin, cout=None, **extra):
            return ResBlock(
                cin, emb_dim, dropout, out_channels=cout, use_scale_shift_norm=use_scale_shift_norm,
                kernel_size_t=kt, padding_t=pt, nonlinearity_type=nonlinearity_type, **extra,
            )

        heads_state = {"num_heads": num_heads}

        def transformer(ch):
            # Head bookkeeping as in LDM: with num_head_channels set, the head count follows the width
            # (and stays at that value for later levels when num_head_channels is unset).
            if num_head_channels == -1:
                d_head = ch // heads_state["num_heads"]
            else:
                heads_state["num_heads"] = ch // num_head_channels
                d_head = num_head_channels
            if legacy:
                d_head = ch // heads_state["num_heads"]
            return SpatialTemporalTransformer(
                ch, heads_state["num_heads"], d_head, depth=transformer_depth, dropout=0.0,
                context_dim=context_dim, temporal_length=temporal_length,
                use_relative_position=use_relative_position,
            )

        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(_conv(in_channels, model_channels, kt, pt))])
        skip_channels = [model_channels]
        ch, ds = model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [res(ch, mult * model_channels)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers.append(transformer(ch))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample, ch, kt, pt)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_channels.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(res(ch), transformer(ch), res(ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers.append(transformer(ch))
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, up=True) if resblock_updown else Upsample(ch, conv_resample, ch, kt, pt))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(
            GroupNorm32(32, ch), _activation(nonlinearity_type), zero_(_conv(model_channels, out_channels, kt, pt))
        )

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor | None = None,
        time_emb_replace: torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """Predict the noise ``(b, out_channels, f, h, w)`` of latents ``x`` ``(b, in_channels, f, h, w)``.

        ``timesteps`` ``(b,)`` (or a ready embedding ``time_emb_replace`` ``(b, 4 * model_channels)``
        or ``(b, f, 4 * model_channels)``); ``context`` ``(b, n, context_dim)``; ``y`` ``(b,)`` class
        labels for class-conditional models. Extra keywords are accepted and ignored, as upstream.
        """
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (batch, {self.in_channels}, frames, height, width), got {tuple(x.shape)}")
        if time_emb_replace is None:
            if timesteps is None:
                raise ValueError("pass timesteps (or time_emb_replace)")
            timesteps = torch.as_tensor(timesteps, device=x.device)
            if timesteps.dim() == 0:
                timesteps = timesteps.expand(x.shape[0])
            emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        else:
            emb = time_emb_replace
        if y is not None:
            if self.num_classes is None:
                raise ValueError("y given but the model is not class-conditional (num_classes is None)")
            emb = emb + self.label_emb(y)
        h = x.to(self.dtype)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
        return self.out(h.to(x.dtype))
