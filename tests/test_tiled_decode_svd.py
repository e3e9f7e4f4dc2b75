"""Synchronized-GroupNorm tiled decoding for the temporal (Stable Video Diffusion) VAE.

A tiny seeded random-weight diffusers ``AutoencoderKLTemporalDecoder`` built in code. Its GroupNorms
have 32 groups, so the smallest channels are (32, 32) (8 or 16 channels do not build). Latents are
``(b * f, 4, 16, 20)`` with tile 12 (stride 9): 2 x 2 = 4 tiles per frame, of 12x12, 12x11, 7x12
and 7x11 latent pixels.
"""

from __future__ import annotations

import weakref

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scalecrafter_video import tiled_decode as td
from scalecrafter_video.ops import groupnorm_stats as gn
from scalecrafter_video.tiled_decode import synced_tiled_decode_temporal

torch.set_num_threads(1)

FRAMES, VIDEOS, TILE = 3, 2, 12
H, W = 16, 20


def tiny_svd_vae(seed: int = 0):
    from diffusers import AutoencoderKLTemporalDecoder

    torch.manual_seed(seed)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32), down_block_types=("DownEncoderBlock2D",) * 2, latent_channels=4,
        layers_per_block=1,
    ).eval()
    # AlphaBlender's mix_factor starts at 0 (alpha 0.5 everywhere): give each block its own mix.
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in vae.decoder.named_parameters():
            if name.endswith("mix_factor"):
                p.copy_(torch.randn(1, generator=gen))
    return vae


def pointwise(vae):
    """The same decoder with every 3x3 Conv2d made 1x1 (its centre tap): no spatial context left, only
    GroupNorm statistics and the temporal layers (all (3,1,1) or 1x1 spatially) couple pixels."""
    for module in list(vae.decoder.modules()):
        for name, conv in list(module.named_children()):
            if isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3):
                new = nn.Conv2d(conv.in_channels, conv.out_channels, 1)
                with torch.no_grad():
                    new.weight.copy_(conv.weight[:, :, 1:2, 1:2] * 3)
                    new.bias.copy_(conv.bias)
                setattr(module, name, new)
    return vae


@pytest.fixture(scope="module")
def vae():
    return tiny_svd_vae(0)


@pytest.fixture(scope="module")
def pw_vae():
    return pointwise(tiny_svd_vae(0))


def smooth_latents(seed: int, videos: int = VIDEOS) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(torch.randn(videos * FRAMES, 4, 4, 5, generator=g) * 2, size=(H, W), mode="bicubic",
                         align_corners=False)


def plain(vae, z):
    with torch.no_grad():
        return vae.decode(z, num_frames=FRAMES).sample


def record_exact_stats(vae, z):
    """Per-GroupNorm (mean, biased var) of the untiled decode, grouped as nn.GroupNorm groups them."""
    exact = {}

    def hook(module, inputs, output):
        x = inputs[0].float().reshape(inputs[0].shape[0], module.num_groups, -1)
        exact[id(module)] = (x.mean(-1), x.var(-1, unbiased=False))

    handles = [n.register_forward_hook(hook) for n in td.synced_groupnorms(vae.decoder)]
    try:
        plain(vae, z)
    finally:
        for h in handles:
            h.remove()
    return exact


def oracle_decode(vae, z, monkeypatch):
    """Tiled decode with the untiled decode's exact statistics in place of the pooled ones."""
    exact = record_exact_stats(vae, z)
    with monkeypatch.context() as m:
        m.setattr(gn, "pool_statistics", lambda norm, stats: exact[id(norm)])
        return synced_tiled_decode_temporal(vae, z, TILE, FRAMES)


def test_tiled_has_the_untiled_shape_and_stays_close(vae):
    z = smooth_latents(0)
    ref = plain(vae, z)
    tiled = synced_tiled_decode_temporal(vae, z, TILE, FRAMES)
    own = synced_tiled_decode_temporal(vae, z, TILE, num_frames=FRAMES, sync=False)
    assert tiled.shape == ref.shape == (VIDEOS * FRAMES, 3, 2 * H, 2 * W) and tiled.dtype == z.dtype
    diff = (tiled - ref).abs()
    # Measured: max 0.330, mean 0.029 (output std 0.28, range about [-1, 1]); the earlier pool without
    # the between-tile variance term: max 0.307, mean 0.036; per-tile statistics: max 0.52, mean
    # 0.065. Not float-equal: the 3x3 convs lack context at tile borders. Bounds about 1.5x the
    # measurement; synchronizing must beat per-tile statistics clearly.
    assert diff.max().item() < 0.45 and diff.mean().item() < 0.055, (diff.max().item(), diff.mean().item())
    assert diff.mean().item() < 0.75 * (own - ref).abs().mean().item()
    assert all("forward" not in m.__dict__ for m in vae.modules())  # nothing left installed


@pytest.mark.parametrize("tile", [max(H, W), 40])
def test_one_tile_is_the_plain_decode(vae, tile):
    z = smooth_latents(1)
    torch.testing.assert_close(synced_tiled_decode_temporal(vae, z, tile, FRAMES), plain(vae, z), rtol=0, atol=1e-6)


def test_exact_statistics_make_tiling_exact_without_spatial_context(pw_vae, monkeypatch):
    """With the untiled statistics and no spatial context, everything else (spatial windows with the
    frame axis whole, num_frames, image_only_indicator, linear blending) must be exact."""
    z = smooth_latents(2)
    torch.testing.assert_close(oracle_decode(pw_vae, z, monkeypatch), plain(pw_vae, z), rtol=0, atol=1e-5)


def test_statistics_pool_per_frame_for_spatial_and_per_video_for_temporal_norms(pw_vae, monkeypatch):
    # White-noise latents whose scale and offset change with the frame, so a video's statistics are
    # far from any one frame's (what pooling the temporal norms per frame would get wrong).
    f = (torch.arange(VIDEOS * FRAMES) % FRAMES).float().reshape(-1, 1, 1, 1)
    z = torch.randn(VIDEOS * FRAMES, 4, H, W, generator=torch.Generator().manual_seed(3)) * (1 + 0.5 * f) + f
    exact = record_exact_stats(pw_vae, z)
    pooled, pool = {}, gn.pool_statistics

    def capture(norm, stats):
        pooled[id(norm)] = pool(norm, stats)
        return pooled[id(norm)]

    monkeypatch.setattr(gn, "pool_statistics", capture)
    tiled = synced_tiled_decode_temporal(pw_vae, z, TILE, FRAMES)
    monkeypatch.undo()
    temporal = {id(m) for name, m in pw_vae.decoder.named_modules() if ".temporal_res_block.norm" in name}
    assert len(temporal) == 10 and set(pooled) == set(exact) and len(exact) == 21
    for key, (mean, var) in exact.items():
        p_mean, p_var = pooled[key]
        # (b*f, groups) for the spatial norms, (b, groups) for the temporal ones: nn.GroupNorm's grouping.
        assert p_mean.shape == mean.shape == ((VIDEOS, 32) if key in temporal else (VIDEOS * FRAMES, 32))
        # Measured max: mean off by 0.07 sd, variance by 15% (spatial norms: one channel of one frame
        # per group); temporal norms 0.035 sd and 8%. Per-frame variances are 52-85% off the per-video
        # ones that the temporal norms use.
        assert ((p_mean - mean).abs() / var.sqrt()).max() < 0.12
        assert ((p_var - var).abs() / var).max() < (0.15 if key in temporal else 0.25)
    ref = plain(pw_vae, z)
    assert (tiled - ref).abs().mean() < 0.013  # measured 0.008; per-tile statistics: 0.024


def test_frame_axis_is_intact(vae, pw_vae, monkeypatch):
    """Changing frame k's latents changes the other frames of its video (temporal convs, AlphaBlender,
    per-video GroupNorms) the same way tiled and untiled, and leaves the other video alone."""
    k = 1
    z = smooth_latents(4)
    z2 = z.clone()
    z2[k] += torch.randn(z[k].shape, generator=torch.Generator().manual_seed(5))
    # Exact on the pointwise decoder with exact statistics.
    d_ref = plain(pw_vae, z2) - plain(pw_vae, z)
    d_tiled = oracle_decode(pw_vae, z2, monkeypatch) - oracle_decode(pw_vae, z, monkeypatch)
    torch.testing.assert_close(d_tiled, d_ref, rtol=0, atol=2e-5)
    for j in range(FRAMES):
        assert d_ref[j].abs().mean() > 0.01  # every frame of the video moved, not only frame k
    # Closely on the real (3x3) decoder with pooled statistics.
    d_ref = plain(vae, z2) - plain(vae, z)
    d_tiled = synced_tiled_decode_temporal(vae, z2, TILE, FRAMES) - synced_tiled_decode_temporal(vae, z, TILE, FRAMES)
    for j in range(FRAMES):
        assert d_ref[j].abs().mean() > 0.02 and d_tiled[j].abs().mean() > 0.02, j
        cos = F.cosine_similarity(d_ref[j].flatten(), d_tiled[j].flatten(), dim=0).item()
        assert cos > 0.9, (j, cos)  # measured 0.948-0.953
    assert d_ref[FRAMES:].abs().max() < 1e-5 and d_tiled[FRAMES:].abs().max() < 1e-5  # other video


def test_every_layer_runs_once_per_tile_and_one_output_is_alive_at_a_time(vae):
    z = smooth_latents(6)
    calls, alive, counts = [], [], {}

    def pre(module, args, kwargs):
        calls.append((tuple(args[0].shape), kwargs["num_frames"], tuple(kwargs["image_only_indicator"].shape)))

    def post(module, args, kwargs, output):
        assert all(r() is None for r in alive), "an earlier decoded tile is still alive"
        alive.append(weakref.ref(output))

    def count(module, args, output, _name=None):
        counts[module] = counts.get(module, 0) + 1

    handles = [vae.decoder.register_forward_pre_hook(pre, with_kwargs=True),
               vae.decoder.register_forward_hook(post, with_kwargs=True)]
    handles += [m.register_forward_hook(count) for m in vae.decoder.modules()]
    try:
        plain(vae, z)
        per_plain, calls[:], alive[:] = dict(counts), [], []
        counts.clear()
        synced_tiled_decode_temporal(vae, z, TILE, FRAMES)
        per_tiled = dict(counts)
        counts.clear()
        synced_tiled_decode_temporal(vae, z, TILE, FRAMES, sync_attention=True)  # attention norm unused
        per_tiled_attention = dict(counts)
    finally:
        for h in handles:
            h.remove()
    tiles = len(td.tile_starts(H, TILE, 9)) * len(td.tile_starts(W, TILE, 9))
    assert tiles == 4
    # One decoder pass per tile: every module (temporal convs, AlphaBlenders, GroupNorms) runs
    # exactly tiles times as often as in the plain decode.
    assert len(per_plain) > 50
    assert per_tiled == per_tiled_attention == {m: tiles * c for m, c in per_plain.items()}
    assert len(calls) == 2 * tiles and len(alive) == 2 * tiles
    for shape, num_frames, indicator in calls:
        assert shape[:2] == (VIDEOS * FRAMES, 4) and max(shape[2:]) <= TILE  # all frames, one window
        assert num_frames == FRAMES and indicator == (VIDEOS, FRAMES)
    assert len({shape for shape, _, _ in calls}) == 4  # 12x12, 12x11, 7x12, 7x11 windows


def test_rejects_bad_inputs_and_restores_the_norms(vae):
    z = smooth_latents(7)
    with pytest.raises(ValueError):
        synced_tiled_decode_temporal(vae, z, 1, FRAMES)
    with pytest.raises(ValueError):
        synced_tiled_decode_temporal(vae, z[:-1], TILE, FRAMES)  # not whole videos
    with pytest.raises(RuntimeError):  # wrong channel count: fails inside the decoder
        synced_tiled_decode_temporal(vae, z[:, :3], TILE, FRAMES)
    assert all("forward" not in m.__dict__ for m in vae.modules())


def test_low_memory_decode_equals_the_lockstep_one(vae):
    z = smooth_latents(8)
    torch.testing.assert_close(synced_tiled_decode_temporal(vae, z, TILE, FRAMES, low_memory=True),
                               synced_tiled_decode_temporal(vae, z, TILE, FRAMES), rtol=1e-5, atol=1e-5)
