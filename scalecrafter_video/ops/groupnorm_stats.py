"""GroupNorm statistics pooled over tiles: what makes a tiled decode normalise like the whole frame.

A tile contributes ``(n_t, mu_t, v_t)`` per sample and group; the pool is the exact mean and (biased)
variance of all the tiles' elements together, within- plus between-tile terms::

    mu  = sum_t w_t mu_t,    var = sum_t w_t (v_t + (mu_t - mu)^2),    w_t = n_t / sum n

and :func:`normalise` applies nn.GroupNorm's affine transform with given statistics.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["normalise", "pool_statistics", "tile_statistics"]

# mean^2 / var above which a tile's variance is taken two-pass (the one-pass E[x^2] - mean^2 would
# lose about 1e-7 * this ratio of relative precision in fp32).
CANCELLATION = 100.0


def tile_statistics(norm: nn.GroupNorm, x: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """One tile's ``(n_t, mu_t, v_t)`` at ``norm``: ``x`` is ``(b, c, *spatial)`` as nn.GroupNorm sees
    it (a frame per sample for ``(b*f, c, h, w)``, a whole video for ``(b, c, f, h, w)``), grouped as
    nn.GroupNorm groups it (``num_groups`` contiguous channel runs); ``mu_t``, ``v_t`` are fp32
    ``(b, groups)``, ``v_t`` the biased variance."""
    xg = x.reshape(x.shape[0], norm.num_groups, -1)
    n = xg.shape[-1]
    # Sum and sum of squares, two plain fp32 reductions (torch.var_mean is ~15x slower on the CPU,
    # more than the whole GroupNorm): var = E[x^2] - mean^2, exact unless the mean dwarfs the
    # spread, where the cancellation would cost precision and the two-pass variance is used instead.
    mean = torch.sum(xg, dim=-1, dtype=torch.float32) / n
    var = torch.linalg.vector_norm(xg, dim=-1, dtype=torch.float32).square() / n - mean.square()
    if bool((mean.square() > CANCELLATION * var.clamp_min(1e-30)).any()):
        var, mean = torch.var_mean(xg.float(), dim=-1, correction=0)
    return n, mean, var.clamp_min(0.0)


def pool_statistics(norm: nn.GroupNorm, stats: list[tuple[int, torch.Tensor, torch.Tensor]]):
    """Pool per-tile ``(n_t, mu_t, v_t)`` (each ``(b, groups)``) into the exact mean and biased
    variance of all the tiles' elements together; returns fp32 ``(mean, var)``, each ``(b, groups)``.
    ``norm`` is the GroupNorm they belong to (unused here; a caller may substitute exact statistics by it)."""
    device = stats[0][1].device
    acc = torch.float32 if device.type == "mps" else torch.float64  # MPS has no float64
    n = torch.tensor([s[0] for s in stats], dtype=acc, device=device)
    w = (n / n.sum())[:, None, None]
    mus = torch.stack([s[1].to(acc) for s in stats])  # (tiles, b, groups)
    vs = torch.stack([s[2].to(acc) for s in stats])
    mean = (w * mus).sum(0)
    var = (w * (vs + (mus - mean).square())).sum(0)
    return mean.float(), var.float()


def normalise(norm: nn.GroupNorm, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """nn.GroupNorm's output for ``x`` ``(b, c, *spatial)`` with the given fp32 ``(b, groups)``
    statistics, computed in fp32 as one fused multiply-add, returned in ``x.dtype``."""
    b, c = x.shape[:2]
    per_group = c // norm.num_groups
    scale = torch.rsqrt(var + norm.eps).repeat_interleave(per_group, dim=1)  # (b, c)
    shift = -mean.repeat_interleave(per_group, dim=1) * scale
    if norm.affine:
        scale = scale * norm.weight.float()
        shift = shift * norm.weight.float() + norm.bias.float()
    shape = (b, c) + (1,) * (x.ndim - 2)
    return torch.addcmul(shift.reshape(shape), x.float(), scale.reshape(shape)).to(x.dtype)
