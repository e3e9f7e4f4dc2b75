"""VideoCrafter1/2 text-to-video UNet (Chen et al. 2023/2024), written natively.

Frames are folded into the batch: spatial layers (``nn.Conv2d`` 3x3, spatial transformers) see
``((b f), c, h, w)``; the temporal layers unfold to ``(b, c, f, h, w)``:

* ``TemporalConvBlock`` after every ResBlock (``temporal_conv: true``, VideoCrafter2), stored under
  the attribute name ``temopral_conv`` exactly as in the checkpoints; four ``Conv3d`` with
  kernel ``(3, 1, 1)`` and an identity residual;
* ``TemporalTransformer`` after every spatial transformer: attention over frames at each pixel,
  GroupNorm statistics over all frames of a sample;
* ``init_attn`` after ``conv_in`` when ``addition_attention`` is set;
* an fps embedding added to the timestep embedding when ``fps_cond`` is set.

Parameter names and shapes equal those of ``lvdm.modules.networks.openaimodel3d.UNetModel`` of
VideoCrafter for the same constructor keywords (``model.diffusion_model.*`` of the checkpoints).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from ..errors import ConfigError
from .ldm_blocks import BasicTransformerBlock, GroupNorm32, timestep_embedding, zero_
from .lvdm import _as_list

__all__ = ["SpatialTransformer", "TemporalConvBlock", "TemporalTransformer", "UNetModel"]


class _EmbedBlock(nn.Module):
    """Marker: ``forward(x, emb, batch_size)`` takes the timestep embedding."""


class Upsample(nn.Module):
    """Nearest x2 per frame, then an optional 3x3 conv. ``((b f), c, h, w)``."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        self.use_conv = use_conv
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv(x) if self.use_conv else x


class Downsample(nn.Module):
    """Stride-2 3x3 conv ``op`` (or 2x2 average pooling). ``((b f), c, h, w)``."""

    def __init__(self, channels: int, use_conv: bool, out_channels: int | None = None):
        super().__init__()
        out_channels = out_channels or channels
        if use_conv:
            self.op = nn.Conv2d(channels, out_channels, 3, stride=2, padding=1)
        else:
            if out_channels != channels:
                raise ConfigError("a pooling downsampler cannot change the channel count")
            self.op = nn.AvgPool2d(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class TemporalConvBlock(nn.Module):
    """Four GroupNorm-SiLU-(Dropout)-Conv3d stages along frames, last one zero-initialised, plus identity.

    Kernels ``(3, 1, 1)`` (``spatial_aware``: ``(3, 3, 3)`` for the first two). ``(b, c, f, h, w)``.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, dropout: float = 0.0, spatial_aware=False):
        super().__init__()
        out_channels = out_channels or in_channels
        k, p = ((3, 3, 3), (1, 1, 1)) if spatial_aware else ((3, 1, 1), (1, 0, 0))
        self.conv1 = nn.Sequential(nn.GroupNorm(32, in_channels), nn.SiLU(), nn.Conv3d(in_channels, out_channels, k, padding=p))

        def stage(kernel, pad):
            return nn.Sequential(
                nn.GroupNorm(32, out_channels), nn.SiLU(), nn.Dropout(dropout),
                nn.Conv3d(out_channels, in_channels, kernel, padding=pad),
            )

        self.conv2 = stage(k, p)
        self.conv3 = stage((3, 1, 1), (1, 0, 0))
        self.conv4 = stage((3, 1, 1), (1, 0, 0))
        zero_(self.conv4[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(_EmbedBlock):
    """Per-frame residual block on ``((b f), c, h, w)``, optionally followed by a TemporalConvBlock."""

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        dropout: float,
        out_channels: int | None = None,
        use_scale_shift_norm: bool = False,
        use_conv: bool = False,
        up: bool = False,
        down: bool = False,
        use_temporal_conv: bool = False,
        tempspatial_aware: bool = False,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_temporal_conv = use_temporal_conv
        self.in_layers = nn.Sequential(GroupNorm32(32, channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.updown = up or down
        if up:
            self.h_upd, self.x_upd = Upsample(channels, False), Upsample(channels, False)
        elif down:
            self.h_upd, self.x_upd = Downsample(channels, False), Downsample(channels, False)
        else:
            self.h_upd = self.x_upd = nn.Identity()
        self.emb_layers = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels if use_scale_shift_norm else out_channels)
        )
        self.out_layers = nn.Sequential(
            GroupNorm32(32, out_channels), nn.SiLU(), nn.Dropout(dropout),
            zero_(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        if out_channels == channels:
            self.skip_connection = nn.Identity()
        elif use_conv:
            self.skip_connection = nn.Conv2d(channels, out_channels, 3, padding=1)
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)
        if use_temporal_conv:
            # attribute name as stored in the released checkpoints (sic)
            self.temopral_conv = TemporalConvBlock(out_channels, out_channels, dropout=0.1, spatial_aware=tempspatial_aware)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        if self.updown:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self.h_upd(h))
            x = self.x_upd(x)
        else:
            h = self.in_layers(x)
        e = rearrange(self.emb_layers(emb).to(h.dtype), "n c -> n c 1 1")
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + e)
        h = self.skip_connection(x) + h
        if self.use_temporal_conv and batch_size:
            h = rearrange(h, "(b f) c h w -> b c f h w", b=batch_size)
            h = rearrange(self.temopral_conv(h), "b c f h w -> (b f) c h w")
        return h


class SpatialTransformer(nn.Module):
    """Per-frame transformer: GroupNorm, ``proj_in`` (1x1 conv or Linear), blocks, zero-init ``proj_out``.

    ``x``: ``((b f), c, h, w)``; ``context``: ``((b f), n, context_dim)``.
    """

    def __init__(
        self, in_channels, n_heads, d_head, depth=1, dropout=0.0, context_dim=None,
        disable_self_attn=False, use_linear=False, img_cross_attention=False,
    ):
        super().__init__()
        inner = n_heads * d_head
        self.use_linear = use_linear
        self.norm = nn.GroupNorm(32, in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(in_channels, inner) if use_linear else nn.Conv2d(in_channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(
                inner, n_heads, d_head, dropout=dropout, context_dim=context_dim,
                disable_self_attn=disable_self_attn, img_cross_attention=img_cross_attention,
            )
            for _ in range(depth)
        )
        self.proj_out = zero_(nn.Linear(inner, in_channels) if use_linear else nn.Conv2d(inner, in_channels, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        _, _, h, w = x.shape
        z = self.norm(x)
        if not self.use_linear:
            z = self.proj_in(z)
        z = rearrange(z, "n c h w -> n (h w) c")
        if self.use_linear:
            z = self.proj_in(z)
        for block in self.transformer_blocks:
            z = block(z, context=context)
        if self.use_linear:
            z = self.proj_out(z)
        z = rearrange(z, "n (h w) c -> n c h w", h=h, w=w)
        if not self.use_linear:
            z = self.proj_out(z)
        return x + z


class TemporalTransformer(nn.Module):
    """Attention along frames at every pixel. ``x``: ``(b, c, f, h, w)`` -> same shape.

    GroupNorm statistics span all frames of a sample; tokens are ``((b h w), f, c)``.
    ``only_self_att`` (the released configs) ignores the text context; otherwise the second
    attention of each block attends the per-frame context.
    """

    def __init__(
        self, in_channels, n_heads, d_head, depth=1, dropout=0.0, context_dim=None, use_linear=False,
        only_self_att=True, causal_attention=False, relative_position=False, temporal_length=None,
    ):
        super().__init__()
        inner = n_heads * d_head
        self.only_self_att = only_self_att
        self.use_linear = use_linear
        self.causal_attention = causal_attention
        if (relative_position or causal_attention) and temporal_length is None:
            raise ConfigError("relative-position or causal temporal attention needs temporal_length")
        self.temporal_length = temporal_length
        self.norm = nn.GroupNorm(32, in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(in_channels, inner) if use_linear else nn.Conv1d(in_channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(
                inner, n_heads, d_head, dropout=dropout, context_dim=None if only_self_att else context_dim,
                relative_position=relative_position, temporal_length=temporal_length,
            )
            for _ in range(depth)
        )
        self.proj_out = zero_(nn.Linear(inner, in_channels) if use_linear else nn.Conv1d(inner, in_channels, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        b, c, f, h, w = x.shape
        z = rearrange(self.norm(x), "b c f h w -> (b h w) c f")
        if not self.use_linear:
            z = self.proj_in(z)
        z = rearrange(z, "n c f -> n f c")
        if self.use_linear:
            z = self.proj_in(z)
        mask = None
        if self.causal_attention:
            causal = torch.tril(torch.ones(self.temporal_length, self.temporal_length, device=x.device))
            mask = repeat(causal, "i j -> n i j", n=z.shape[0])
        if self.only_self_att:
            for block in self.transformer_blocks:
                z = block(z, mask=mask)
        else:
            # each pixel row of sample j attends the text of frame (row // (h*w // f)), as upstream
            z = rearrange(z, "(b n) f c -> b n f c", b=b)
            ctx = rearrange(context, "(b f) l d -> b f l d", f=f)
            rows = []
            for block in self.transformer_blocks:
                rows = [block(z[j], context=repeat(ctx[j], "f l d -> (f r) l d", r=(h * w) // f)) for j in range(b)]
                z = torch.stack(rows)
            z = rearrange(z, "b n f c -> (b n) f c")
        if self.use_linear:
            z = rearrange(self.proj_out(z), "(b h w) f c -> b c f h w", b=b, h=h, w=w)
        else:
            z = rearrange(self.proj_out(rearrange(z, "n f c -> n c f")), "(b h w) c f -> b c f h w", b=b, h=h, w=w)
        return x + z


class TimestepEmbedSequential(nn.Sequential):
    """Dispatch on ``((b f), c, h, w)`` features: ResBlocks get the embedding, spatial transformers
    the context, temporal transformers a ``(b, c, f, h, w)`` view."""

    def forward(self, x, emb, context=None, batch_size=None):
        for layer in self:
            if isinstance(layer, _EmbedBlock):
                x = layer(x, emb, batch_size)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            elif isinstance(layer, TemporalTransformer):
                x = rearrange(x, "(b f) c h w -> b c f h w", b=batch_size)
                x = rearrange(layer(x, context), "b c f h w -> (b f) c h w")
            else:
                x = layer(x)
        return x


class UNetModel(nn.Module):
    """VideoCrafter UNet; keywords as VideoCrafter's ``UNetModel`` (``dims`` must stay 2).

    ``forward(x, timesteps, context=None, features_adapter=None, fps=16)``:
        x ``(b, in_channels, f, h, w)``, timesteps ``(b,)``, context ``(b, n, context_dim)``,
        fps an int or ``(b,)`` tensor (used when ``fps_cond``); returns ``(b, out_channels, f, h, w)``.
    """

    def __init__(
        self,
        in_channels,
        model_channels,
        out_channels,
        num_res_blocks,
        attention_resolutions,
        dropout=0.0,
        channel_mult=(1, 2, 4, 8),
        conv_resample=True,
        dims=2,
        context_dim=None,
        use_scale_shift_norm=False,
        resblock_updown=False,
        num_heads=-1,
        num_head_channels=-1,
        transformer_depth=1,
        use_linear=False,
        use_checkpoint=False,
        temporal_conv=False,
        tempspatial_aware=False,
        temporal_attention=True,
        temporal_selfatt_only=True,
        use_relative_position=True,
        use_causal_attention=False,
        temporal_length=None,
        use_fp16=False,
        addition_attention=False,
        use_image_attention=False,
        temporal_transformer_depth=1,
        fps_cond=False,
    ):
        super().__init__()
        if dims != 2:
            raise ConfigError(f"VideoCrafter's UNet folds frames into the batch and needs dims: 2, got {dims}")
        if num_heads == -1 and num_head_channels == -1:
            raise ConfigError("either num_heads or num_head_channels must be set")
        if addition_attention and num_head_channels == -1:
            raise ConfigError("addition_attention needs num_head_channels (init_attn uses 8 heads of that width)")
        channel_mult = tuple(_as_list(channel_mult))
        attention_resolutions = tuple(_as_list(attention_resolutions))
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_res_blocks = num_res_blocks
        self.attention_resolutions = attention_resolutions
        self.channel_mult = channel_mult
        self.temporal_attention = temporal_attention
        self.addition_attention = addition_attention
        self.use_image_attention = use_image_attention
        self.fps_cond = fps_cond
        self.temporal_length = temporal_length
        self.dtype = torch.float16 if use_fp16 else torch.float32

        emb_dim = 4 * model_channels
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if fps_cond:
            self.fps_embedding = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        temporal_kw = dict(
            only_self_att=temporal_selfatt_only, causal_attention=use_causal_attention,
            relative_position=use_relative_position, temporal_length=temporal_length,
        )

        def res(cin, cout=None, temporal=True, **extra):
            return ResBlock(
                cin, emb_dim, dropout, out_channels=cout, use_scale_shift_norm=use_scale_shift_norm,
                use_temporal_conv=temporal_conv and temporal, tempspatial_aware=tempspatial_aware, **extra,
            )

        heads_state = {"num_heads": num_heads}

        def attention_layers(ch):
            if num_head_channels == -1:
                d_head = ch // heads_state["num_heads"]
            else:
                heads_state["num_heads"] = ch // num_head_channels
                d_head = num_head_channels
            n_heads = heads_state["num_heads"]
            layers = [
                SpatialTransformer(
                    ch, n_heads, d_head, depth=transformer_depth, context_dim=context_dim, use_linear=use_linear,
                    img_cross_attention=use_image_attention,
                )
            ]
            if temporal_attention:
                layers.append(
                    TemporalTransformer(
                        ch, n_heads, d_head, depth=temporal_transformer_depth, context_dim=context_dim,
                        use_linear=use_linear, **temporal_kw,
                    )
                )
            return layers

        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        if addition_attention:
            self.init_attn = TimestepEmbedSequential(
                TemporalTransformer(
                    model_channels, 8, num_head_channels, depth=transformer_depth, context_dim=context_dim, **temporal_kw
                )
            )
        skip_channels = [model_channels]
        ch, ds = model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [res(ch, mult * model_channels)]
                ch = mult * model_channels
                if ds in attention_resolutions:
                    layers += attention_layers(ch)
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, ch, temporal=False, down=True) if resblock_updown else Downsample(ch, conv_resample, ch)
                self.input_blocks.append(TimestepEmbedSequential(down))
                skip_channels.append(ch)
                ds *= 2

        self.middle_block = TimestepEmbedSequential(res(ch), *attention_layers(ch), res(ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers += attention_layers(ch)
                if level and i == num_res_blocks:
                    layers.append(res(ch, ch, temporal=False, up=True) if resblock_updown else Upsample(ch, conv_resample, ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(32, ch), nn.SiLU(), zero_(nn.Conv2d(model_channels, out_channels, 3, padding=1)))

    def forward(self, x, timesteps, context=None, features_adapter=None, fps=16, **kwargs):
        """Predict the noise ``(b, out_channels, f, h, w)``; see the class docstring."""
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (batch, {self.in_channels}, frames, height, width), got {tuple(x.shape)}")
        b, _, f, _, _ = x.shape
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(b)
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        if self.fps_cond:
            if isinstance(fps, int):
                fps = torch.full_like(timesteps, fps)
            emb = emb + self.fps_embedding(timestep_embedding(torch.as_tensor(fps, device=x.device), self.model_channels))
        if context is not None:
            context = repeat(context, "b n d -> (b f) n d", f=f)
        emb = repeat(emb, "b d -> (b f) d", f=f)
        h = rearrange(x, "b c f h w -> (b f) c h w").to(self.dtype)
        skips = []
        for index, block in enumerate(self.input_blocks):
            h = block(h, emb, context=context, batch_size=b)
            if index == 0 and self.addition_attention:
                h = self.init_attn(h, emb, context=context, batch_size=b)
            if features_adapter is not None and (index + 1) % 3 == 0:
                h = h + features_adapter[(index + 1) // 3 - 1]
            skips.append(h)
        if features_adapter is not None and len(features_adapter) != len(self.input_blocks) // 3:
            raise ValueError(
                f"features_adapter must hold {len(self.input_blocks) // 3} feature maps, got {len(features_adapter)}"
            )
        h = self.middle_block(h, emb, context=context, batch_size=b)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context=context, batch_size=b)
        y = self.out(h.to(x.dtype))
        return rearrange(y, "(b f) c h w -> b c f h w", b=b)
