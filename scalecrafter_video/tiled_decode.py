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
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

__all__ = ["synced_tiled_decode", "tile_starts"]

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


@torch.no_grad()
def synced_tiled_decode(
    vae, z: torch.Tensor, tile_size: int, sync_attention: bool = False, sync: bool = True
) -> torch.Tensor:
    """Decode scaled latents ``z`` ``(n, c, h, w)`` (already divided by the scaling factor) with
    latent tiles of ``tile_size``; returns ``(n, 3, H, W)`` like ``vae.decode(z).sample``.

    Tiles overlap by a quarter; the stride is ``int(tile_size * 0.75)``. A frame that fits in one
    tile is decoded in one plain pass. ``sync=False`` keeps per-tile statistics (the unsynchronized
    baseline, for comparisons).
    """
    if tile_size < 2:
        raise ValueError(f"tile_size must be at least 2 latent pixels, got {tile_size}")
    n, _, h, w = z.shape
    if h <= tile_size and w <= tile_size:
        return vae.decode(z).sample
    stride = max(int(tile_size * (1 - OVERLAP)), 1)
    rows, cols = tile_starts(h, tile_size, stride), tile_starts(w, tile_size, stride)
    tiles = [(i, j) for i in rows for j in cols]
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
        scale = out = weight = None
        for i, j in tiles:
            tile = run(i, j).float()
            if out is None:
                scale = tile.shape[-1] // (min(j + tile_size, w) - j)  # pixels per latent pixel
                out = torch.zeros(n, tile.shape[1], h * scale, w * scale, dtype=torch.float32, device=tile.device)
                weight = torch.zeros(1, 1, h * scale, w * scale, dtype=torch.float32, device=tile.device)
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
    return (out / weight.clamp_min(1e-6)).to(z.dtype)
