"""Tiled VAE decoding with GroupNorm statistics synchronized across tiles (method notes §7).

A frame too large for one decoder pass is cut into overlapping latent tiles. Decoding tiles
independently gives every tile its own GroupNorm statistics, which shows as colour and contrast
seams. Here every decoder GroupNorm (except the attention block's, kept per tile as in the official
patch) normalises with statistics pooled over all tiles of the same frame, per group, in fp32:

    mu      = sum_t (n_t / N) * mu_t
    sigma^2 = sum_t (n_t / N) * m_t * n_t / (n_t - 1)

with ``n_t`` the tile's element count in the group, ``N = sum_t n_t``, ``mu_t`` the tile mean and
``m_t`` its mean squared deviation (overlaps are counted once per tile that holds them).

Memory stays flat in the frame size: tiles are never held together. The pooled statistics are
found layer by layer: pass k runs every tile up to the first GroupNorm whose statistics are not yet
known (earlier GroupNorms use their pooled statistics), records the tile's ``(n_t, mu_t, m_t)`` and
stops there; the pool is then fixed. A last pass decodes each tile with all statistics fixed and
blends the overlaps linearly. The price is compute: about (number of GroupNorms / 2) partial
decoder passes on top of the final one. Decoding is usually a small share of sampling at high
resolution; ``tile_size=None`` keeps the plain decode.

Temporal decoders (:func:`synced_tiled_decode_temporal`, for diffusers'
``AutoencoderKLTemporalDecoder``, the Stable Video Diffusion VAE): tiles are spatial only and keep
the frame axis whole, so every tile holds all frames of its window and the decoder's temporal
layers (``TemporalResnetBlock``'s (3,1,1) convs, ``AlphaBlender`` mixing, ``time_conv_out``) see
every frame, as in the plain decode. The statistics are pooled with the grouping each GroupNorm
itself uses: the spatial ones (``ResnetBlock2D``, ``conv_norm_out``) see ``(b*f, c, h, w)`` and are
pooled per frame and group; the temporal ones (``TemporalResnetBlock.norm1/norm2``) see
``(b, c, f, h, w)``, so their groups span all frames of a video and are pooled per video and group.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

__all__ = ["synced_tiled_decode", "synced_tiled_decode_temporal", "tile_starts"]

OVERLAP = 0.25  # fraction of a tile shared with its neighbour (diffusers' tiling)


class _Stop(Exception):
    """Raised inside the decoder once the GroupNorm being measured has been reached."""


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of ``tile`` with ``stride`` covering ``[0, size)``; the last tile is
    the one that reaches the end (no tile lies wholly inside the overlap of the previous one)."""
    starts = [0]
    while starts[-1] + tile < size:
        starts.append(starts[-1] + stride)
    return starts


def _synced_groupnorms(decoder: nn.Module, sync_attention: bool = False) -> list[nn.GroupNorm]:
    out = []
    for name, module in decoder.named_modules():
        if isinstance(module, nn.GroupNorm):
            in_attention = "attentions" in name.split(".") or name.endswith("group_norm")
            if sync_attention or not in_attention:
                out.append(module)
    return out


class _Sync:
    """Per-GroupNorm pooled statistics, filled one layer per pass."""

    def __init__(self, norms: list[nn.GroupNorm]):
        self.norms = norms
        self.stats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id -> (mean, var), (b, groups)
        self.measuring: nn.GroupNorm | None = None
        self.pending: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (n_t, mu_t, m_t) per tile

    def forward(self, norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        # Groups as nn.GroupNorm forms them: per sample x[k] (a frame for (b*f, c, h, w) inputs, a
        # whole video for (b, c, f, h, w) ones), channels split in num_groups contiguous runs.
        b, c = x.shape[:2]
        g = norm.num_groups
        xg = x.float().reshape(b, g, -1)
        known = self.stats.get(id(norm))
        if known is None:
            if self.measuring is not None and self.measuring is not norm:
                raise RuntimeError("a GroupNorm was reached twice in one measuring pass")
            self.measuring = norm
            n = xg.shape[-1]
            mu = xg.mean(-1)
            m = xg.var(-1, unbiased=False)
            self.pending.append((n, mu, m))
            raise _Stop
        mean, var = known
        y = (xg - mean[..., None]) * torch.rsqrt(var[..., None] + norm.eps)
        y = y.reshape(x.shape)
        if norm.affine:
            shape = (1, c) + (1,) * (x.ndim - 2)
            y = y * norm.weight.float().reshape(shape) + norm.bias.float().reshape(shape)
        return y.to(x.dtype)

    def close_pass(self) -> None:
        """Pool the measured tiles' statistics (the §7 formula) and fix them for later passes."""
        n = torch.tensor([p[0] for p in self.pending], dtype=torch.float64)
        mus = torch.stack([p[1].double() for p in self.pending])  # (tiles, b, g)
        ms = torch.stack([p[2].double() for p in self.pending])
        w = (n / n.sum())[:, None, None]
        mean = (w * mus).sum(0)
        var = (w * ms * (n / (n - 1))[:, None, None]).sum(0)
        self.stats[id(self.measuring)] = (mean.float(), var.float())
        self.measuring, self.pending = None, []

    @contextlib.contextmanager
    def installed(self):
        """Route the chosen GroupNorms through :meth:`forward` (instance attribute, removed on exit)."""
        try:
            for norm in self.norms:
                norm.forward = (lambda x, _n=norm: self.forward(_n, x))
            yield self
        finally:
            for norm in self.norms:
                norm.__dict__.pop("forward", None)


def _ramp(length: int, device) -> torch.Tensor:
    """Weights rising from (0, 1) over ``length`` samples: the incoming tile's share in an overlap."""
    return (torch.arange(length, device=device, dtype=torch.float32) + 0.5) / length


class _Canvas:
    """Accumulates decoded tiles with a linear cross-fade over each tile's overlap with the previous
    row / column (tiles arrive in row-major order); only the full-size output is kept."""

    def __init__(self, n: int, h: int, w: int, tile_size: int, rows: list[int], cols: list[int]):
        self.n, self.h, self.w, self.tile_size, self.rows, self.cols = n, h, w, tile_size, rows, cols
        self.scale = self.out = self.weight = None

    def add(self, i: int, j: int, tile: torch.Tensor) -> None:
        tile = tile.float()
        h, w, tile_size, rows, cols = self.h, self.w, self.tile_size, self.rows, self.cols
        if self.out is None:
            self.scale = tile.shape[-1] // (min(j + tile_size, w) - j)  # pixels per latent pixel
            scale = self.scale
            self.out = torch.zeros(self.n, tile.shape[1], h * scale, w * scale, dtype=torch.float32,
                                   device=tile.device)
            self.weight = torch.zeros(1, 1, h * scale, w * scale, dtype=torch.float32, device=tile.device)
        scale, out, weight = self.scale, self.out, self.weight
        th, tw = tile.shape[-2:]
        wy = torch.ones(th, device=tile.device)
        wx = torch.ones(tw, device=tile.device)
        # Linear cross-fade over the true overlap with the previous row / column.
        if i > 0:
            ov = (rows[rows.index(i) - 1] + tile_size - i) * scale
            wy[:ov] = _ramp(ov, tile.device)
        if j > 0:
            ov = (cols[cols.index(j) - 1] + tile_size - j) * scale
            wx[:ov] = _ramp(ov, tile.device)
        wt = (wy[:, None] * wx[None, :])[None, None]
        y0, x0 = i * scale, j * scale
        region = (slice(None), slice(None), slice(y0, y0 + th), slice(x0, x0 + tw))
        # out = out * (1 - wt) + tile * wt in the overlap, i.e. the previous tiles' blend fades out.
        out[region] = out[region] * (1 - wt) + tile * wt
        weight[region] = weight[region] * (1 - wt) + wt

    def result(self, dtype: torch.dtype) -> torch.Tensor:
        return (self.out / self.weight.clamp_min(1e-6)).to(dtype)


def _tiles(h: int, w: int, tile_size: int) -> tuple[list[int], list[int], list[tuple[int, int]]]:
    stride = max(int(tile_size * (1 - OVERLAP)), 1)
    rows, cols = tile_starts(h, tile_size, stride), tile_starts(w, tile_size, stride)
    return rows, cols, [(i, j) for i in rows for j in cols]


@torch.no_grad()
def synced_tiled_decode(
    vae, z: torch.Tensor, tile_size: int, sync_attention: bool = False, sync: bool = True
) -> torch.Tensor:
    """Decode scaled latents ``z`` ``(n, c, h, w)`` (already divided by the scaling factor) with
    latent tiles of ``tile_size``; returns ``(n, 3, H, W)`` like ``vae.decode(z).sample``.

    Tiles overlap by a quarter; the stride is ``int(tile_size * 0.75)``. A frame that fits in one
    tile is decoded in one plain pass. ``sync=False`` keeps per-tile statistics (the unsynchronized
    baseline, for comparisons). For the temporal (Stable Video Diffusion) VAE use
    :func:`synced_tiled_decode_temporal`.
    """
    if tile_size < 2:
        raise ValueError(f"tile_size must be at least 2 latent pixels, got {tile_size}")
    n, _, h, w = z.shape
    if h <= tile_size and w <= tile_size:
        return vae.decode(z).sample
    rows, cols, tiles = _tiles(h, w, tile_size)
    decoder = vae.decoder
    pool = _Sync(_synced_groupnorms(decoder, sync_attention) if sync else [])

    def run(i: int, j: int) -> torch.Tensor:
        part = z[:, :, i : i + tile_size, j : j + tile_size]
        if getattr(vae, "post_quant_conv", None) is not None:
            part = vae.post_quant_conv(part)
        return decoder(part)

    with pool.installed():
        for _ in range(len(pool.norms)):  # one measuring pass per synchronized GroupNorm
            for i, j in tiles:
                try:
                    run(i, j)
                except _Stop:
                    continue
                raise RuntimeError("decoder finished without reaching an unmeasured GroupNorm")
            pool.close_pass()
        canvas = _Canvas(n, h, w, tile_size, rows, cols)
        for i, j in tiles:
            tile = run(i, j)
            canvas.add(i, j, tile)
            del tile  # only one tile alive at a time
    return canvas.result(z.dtype)


@torch.no_grad()
def synced_tiled_decode_temporal(
    vae, z: torch.Tensor, tile_size: int, num_frames: int, sync_attention: bool = False, sync: bool = True
) -> torch.Tensor:
    """Tiled decode for a temporal VAE (diffusers' ``AutoencoderKLTemporalDecoder``, Stable Video
    Diffusion); the counterpart of ``vae.decode(z, num_frames=num_frames).sample``.

    Shapes:
        ``z``: ``(b * num_frames, c, h, w)`` scaled latents (already divided by the scaling factor),
        video-major as the VAE expects: rows ``k * num_frames ... (k + 1) * num_frames - 1`` are the
        frames of video ``k``, in time order.
        Each tile: ``z[:, :, i:i + tile_size, j:j + tile_size]``, i.e. ``(b * num_frames, c, th, tw)``
        with ``th, tw <= tile_size``: every frame of every video at one spatial window, decoded with
        the same ``num_frames`` and an all-zero ``image_only_indicator`` ``(b, num_frames)`` as the
        plain decode, so the temporal layers mix the same frames as they would untiled.
        Returns ``(b * num_frames, 3, H, W)`` (``H = h * s``, ``W = w * s``, ``s`` the VAE's upscale
        factor), in ``z.dtype``.

    GroupNorm statistics are pooled over the tiles per the layer's own grouping: per frame and
    group for the spatial norms (input ``(b*f, c, h, w)``), per video and group, over all its
    frames, for the temporal norms (input ``(b, c, f, h, w)``). With the attention block's norm
    left per tile (``sync_attention=False``) as in the 2D path. Measuring passes run until a tile
    decodes without reaching an unmeasured GroupNorm (norms the decoder never calls, such as the
    mid-block attention when ``layers_per_block=1``, cost nothing); that last tile's output is kept
    as the first tile of the final pass. Tiles overlap by a quarter and are blended linearly as in
    :func:`synced_tiled_decode`; a frame that fits in one tile is decoded in one plain pass. Only one
    decoded tile is alive at a time (plus the full-size output); each holds all ``b * num_frames``
    frames of its window, so call it per video to bound memory further. ``sync=False`` keeps
    per-tile statistics.
    """
    if tile_size < 2:
        raise ValueError(f"tile_size must be at least 2 latent pixels, got {tile_size}")
    if z.ndim != 4:
        raise ValueError(f"expected latents (batch * num_frames, c, h, w), got shape {tuple(z.shape)}")
    n, _, h, w = z.shape
    if num_frames < 1 or n % num_frames:
        raise ValueError(f"{n} latent frames are not a whole number of videos of {num_frames} frames")
    if h <= tile_size and w <= tile_size:
        return vae.decode(z, num_frames=num_frames).sample
    rows, cols, tiles = _tiles(h, w, tile_size)
    decoder = vae.decoder
    pool = _Sync(_synced_groupnorms(decoder, sync_attention) if sync else [])
    indicator = torch.zeros(n // num_frames, num_frames, dtype=z.dtype, device=z.device)

    def run(i: int, j: int) -> torch.Tensor:
        part = z[:, :, i : i + tile_size, j : j + tile_size]
        if getattr(vae, "post_quant_conv", None) is not None:  # none in diffusers' temporal VAE
            part = vae.post_quant_conv(part)
        return decoder(part, image_only_indicator=indicator, num_frames=num_frames)

    first = None
    with pool.installed():
        while first is None:  # one measuring pass per GroupNorm the decoder reaches
            for k, (i, j) in enumerate(tiles):
                try:
                    out = run(i, j)
                except _Stop:
                    continue
                if k or pool.measuring is not None:
                    raise RuntimeError("tiles reached different GroupNorms in one measuring pass")
                first = out  # every used GroupNorm is measured: this is tile 0's final decode
                break
            else:
                pool.close_pass()
        canvas = _Canvas(n, h, w, tile_size, rows, cols)
        canvas.add(*tiles[0], first)
        del first, out
        for i, j in tiles[1:]:
            tile = run(i, j)
            canvas.add(i, j, tile)
            del tile  # only one tile alive at a time
    return canvas.result(z.dtype)
