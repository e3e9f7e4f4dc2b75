"""Synchronized-GroupNorm tiled VAE decoding (method notes §7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scalecrafter_video import tiled_decode as td
from scalecrafter_video.ops import groupnorm_stats as gn
from scalecrafter_video.tiled_decode import synced_tiled_decode, tile_starts


class _Out:
    def __init__(self, sample):
        self.sample = sample


class _PointwiseDecoder(nn.Module):
    """1x1 convs, GroupNorms and nearest 2x upsampling: no tile-border effects, so any tiled/untiled
    difference comes from the GroupNorm statistics alone."""

    def __init__(self):
        super().__init__()
        self.a, self.n1 = nn.Conv2d(4, 16, 1), nn.GroupNorm(4, 16)
        self.b, self.n2 = nn.Conv2d(16, 16, 1), nn.GroupNorm(4, 16)
        self.c = nn.Conv2d(16, 3, 1)

    def forward(self, z):
        x = F.silu(self.n1(self.a(z)))
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.c(F.silu(self.n2(self.b(x))))


class _PointwiseVAE(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.decoder, self.post_quant_conv = _PointwiseDecoder(), nn.Conv2d(4, 4, 1)

    def decode(self, z):
        return _Out(self.decoder(self.post_quant_conv(z)))


@pytest.mark.parametrize("size, tile, stride", [(8, 8, 6), (9, 8, 6), (20, 8, 6), (64, 16, 12), (5, 2, 1)])
def test_tile_starts_cover_the_axis(size, tile, stride):
    starts = tile_starts(size, tile, stride)
    assert starts[0] == 0 and starts[-1] + tile >= size
    assert all(b - a == stride for a, b in zip(starts, starts[1:]))
    assert len(starts) == 1 or starts[-2] + tile < size  # no tile lies inside the previous overlap


def test_pooled_statistics_are_those_of_all_tiles_together():
    torch.manual_seed(0)
    norm = nn.GroupNorm(2, 4)
    tiles = [torch.randn(3, 4, 5, 7) * 2 + 1, torch.randn(3, 4, 6, 3) - 0.5, torch.randn(3, 4, 2, 2)]
    mean, var = gn.pool_statistics(norm, [gn.tile_statistics(norm, t) for t in tiles])
    # Independent float64 evaluation: the tiles' elements of each (sample, group) concatenated.
    arrays = [t.double().numpy().reshape(3, 2, -1) for t in tiles]
    joined = np.concatenate(arrays, axis=-1)
    np.testing.assert_allclose(mean.numpy(), joined.mean(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var.numpy(), joined.var(-1), rtol=1e-5, atol=1e-6)
    # The within-tile term alone (the pre-2026-12 formula, without Bessel) is clearly lower here.
    n = np.array([a.shape[-1] for a in arrays], dtype=np.float64)
    within = np.einsum("t,tbg->bg", n / n.sum(), np.stack([a.var(-1) for a in arrays]))
    assert (joined.var(-1) - within).min() > 0.05
    # ...and normalising with them reproduces GroupNorm's affine transform with those statistics.
    with torch.no_grad():
        norm.weight.copy_(torch.randn(4))
        norm.bias.copy_(torch.randn(4))
    x = tiles[0]
    y = gn.normalise(norm, x, mean, var)
    xg = x.reshape(3, 2, -1)
    ref = ((xg - mean[..., None]) / torch.sqrt(var[..., None] + norm.eps)).reshape(x.shape)
    ref = ref * norm.weight[None, :, None, None] + norm.bias[None, :, None, None]
    torch.testing.assert_close(y, ref.detach(), rtol=1e-5, atol=1e-5)
    # One tile: the pool is the tile's own statistics, i.e. nn.GroupNorm itself.
    one = gn.pool_statistics(norm, [gn.tile_statistics(norm, x)])
    torch.testing.assert_close(gn.normalise(norm, x, *one), norm(x).detach(), rtol=1e-5, atol=1e-5)


def test_tiled_equals_untiled_within_tolerance_on_a_pointwise_decoder():
    vae = _PointwiseVAE().eval()
    z = torch.randn(2, 4, 40, 56, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = vae.decode(z).sample
        tiled = synced_tiled_decode(vae, z, 16)
        own = synced_tiled_decode(vae, z, 16, sync=False)
    assert tiled.shape == ref.shape == (2, 3, 80, 112)
    synced_err = (tiled - ref).abs().max().item()
    own_err = (own - ref).abs().max().item()
    assert synced_err < 0.03, synced_err
    assert synced_err < own_err / 2, (synced_err, own_err)
    assert all("forward" not in m.__dict__ for m in vae.modules())  # nothing left installed


def test_sync_beats_per_tile_statistics_on_a_real_vae_layout(tiny):
    vae = tiny.vae(0)
    # Smooth latents (like a real VAE's), 48x48 latent = 96x96 px, four 24-latent tiles per frame.
    z = F.interpolate(torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * 2, size=(48, 48),
                      mode="bicubic", align_corners=False)
    with torch.no_grad():
        ref = vae.decode(z).sample
        tiled = synced_tiled_decode(vae, z, 24)
        own = synced_tiled_decode(vae, z, 24, sync=False)
    synced_mean = (tiled - ref).abs().mean().item()
    own_mean = (own - ref).abs().mean().item()
    assert synced_mean < 0.6 * own_mean, (synced_mean, own_mean)


def test_pipeline_decode_tiled_and_default_paths(tiny):
    from scalecrafter_video.pipelines.text_to_video import TextToVideoPipeline
    vae = tiny.vae(0)
    pipe = TextToVideoPipeline.__new__(TextToVideoPipeline)
    pipe.vae = vae
    latents = torch.randn(1, 4, 5, 12, 12, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        plain = pipe.decode(latents, chunk_size=2)
        manual = vae.decode(latents[0].permute(1, 0, 2, 3) / vae.config.scaling_factor).sample
    expected = ((manual.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(plain[0], expected)  # the default path is the plain decode
    one_tile = pipe.decode(latents, chunk_size=2, tile_size=12)  # fits in one tile: plain decode
    np.testing.assert_array_equal(one_tile, plain)
    tiled = pipe.decode(latents, chunk_size=2, tile_size=8)
    assert tiled.shape == plain.shape == (1, 5, 24, 24, 3) and tiled.dtype == np.uint8


def test_restores_groupnorms_after_an_error():
    vae = _PointwiseVAE().eval()
    with pytest.raises(ValueError):
        synced_tiled_decode(vae, torch.randn(1, 4, 20, 20), 1)
    bad = torch.randn(1, 3, 20, 20)  # wrong channel count: fails inside the decoder
    with pytest.raises(RuntimeError):
        synced_tiled_decode(vae, bad, 8)
    assert all("forward" not in m.__dict__ for m in vae.modules())


def test_pooled_statistics_are_nearly_as_good_as_the_global_ones(monkeypatch, tiny):
    """Tiles normalised with the true whole-frame statistics (an oracle) still differ from the plain
    decode at tile borders (receptive field); the pooled statistics should add little on top."""
    vae = tiny.vae(0)
    z = F.interpolate(torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * 2, size=(48, 48),
                      mode="bicubic", align_corners=False)
    norms = td.synced_groupnorms(vae.decoder)
    exact = {}

    def record(module, inputs, output):
        x = inputs[0].float().reshape(inputs[0].shape[0], module.num_groups, -1)
        exact[id(module)] = (x.mean(-1), x.var(-1, unbiased=False))

    handles = [n.register_forward_hook(record) for n in norms]
    with torch.no_grad():
        ref = vae.decode(z).sample
    for h in handles:
        h.remove()
    with torch.no_grad():
        pooled = synced_tiled_decode(vae, z, 24)

    monkeypatch.setattr(gn, "pool_statistics", lambda norm, stats: exact[id(norm)])
    with torch.no_grad():
        oracle = synced_tiled_decode(vae, z, 24)
    pooled_err = (pooled - ref).abs().mean().item()
    oracle_err = (oracle - ref).abs().mean().item()
    assert oracle_err <= pooled_err < 1.5 * oracle_err, (pooled_err, oracle_err)


def _count_calls(model: nn.Module, fn):
    """Run ``fn()`` with a forward hook on every submodule of ``model``; calls per module name."""
    counts: dict[str, int] = {}
    handles = [m.register_forward_hook(lambda mod, args, out, _k=name: counts.__setitem__(_k, counts.get(_k, 0) + 1))
               for name, m in model.named_modules() if name]
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
    return counts


def _smooth(n: int, side: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 4, 6, 6, generator=g) * 2
    return F.interpolate(z, size=(side, side), mode="bicubic", align_corners=False)


def test_every_decoder_layer_runs_exactly_once_per_tile(tiny):
    vae = tiny.vae(0)
    z = _smooth(2, 40)
    tiles = len(tile_starts(40, 16, 12)) ** 2
    assert tiles == 9
    with torch.no_grad():
        plain = _count_calls(vae, lambda: vae.decode(z))
    tiled = _count_calls(vae, lambda: synced_tiled_decode(vae, z, 16))
    decoder_plain = {k: v for k, v in plain.items() if k.startswith(("decoder", "post_quant_conv"))}
    assert sum(1 for k in decoder_plain if k.endswith(("norm1", "norm2", "conv_norm_out"))) >= 5  # synced norms
    assert {k: v * tiles for k, v in decoder_plain.items()} == tiled


def test_one_tile_is_vae_decode(tiny):
    vae = tiny.vae(0)
    z = _smooth(1, 20, seed=3)
    with torch.no_grad():
        ref = vae.decode(z).sample
    for tile in (20, 32):
        torch.testing.assert_close(synced_tiled_decode(vae, z, tile), ref, rtol=0, atol=0)


def test_exact_statistics_make_a_pointwise_decoder_exact(monkeypatch):
    """No spatial context: with the untiled statistics substituted, tiling and blending are exact,
    so the lockstep runs each tile with the statistics of its own GroupNorm."""
    vae = _PointwiseVAE().eval()
    z = torch.randn(2, 4, 40, 56, generator=torch.Generator().manual_seed(1))
    exact = {}

    def record(module, inputs, output):
        x = inputs[0].float().reshape(inputs[0].shape[0], module.num_groups, -1)
        exact[id(module)] = (x.mean(-1), x.var(-1, unbiased=False))

    handles = [n.register_forward_hook(record) for n in (vae.decoder.n1, vae.decoder.n2)]
    with torch.no_grad():
        ref = vae.decode(z).sample
    for h in handles:
        h.remove()
    monkeypatch.setattr(gn, "pool_statistics", lambda norm, stats: exact[id(norm)])
    torch.testing.assert_close(synced_tiled_decode(vae, z, 16), ref, rtol=0, atol=1e-5)


def test_parking_moves_waiting_tiles_out_and_back(monkeypatch, tiny):
    """On the CPU host and device are the same, so parking is simulated: parked data goes to float64
    (a stand-in for host memory), and must be back in its own dtype before the tile resumes."""
    vae = tiny.vae(0)
    z = _smooth(1, 40, seed=5)
    expected = synced_tiled_decode(vae, z, 16, park=False)
    parked, restored = [], []

    def to_host(t):
        assert t.dtype == torch.float32
        parked.append(t.numel())
        return t.to(torch.float64)

    pool = gn.pool_statistics

    def pool_on_device(norm, stats):  # the statistics handed to the scheduler are never parked
        assert all(s[1].dtype == s[2].dtype == torch.float32 for s in stats)
        return pool(norm, stats)

    monkeypatch.setattr(gn, "pool_statistics", pool_on_device)

    def to_device(t, like):
        assert t.dtype == torch.float64
        restored.append(t.numel())
        return t.to(like.dtype)

    monkeypatch.setattr(td, "_to_host", to_host)
    monkeypatch.setattr(td, "_to_device", to_device)
    out = synced_tiled_decode(vae, z, 16, park=True)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert parked and sorted(parked) == sorted(restored)
    norms = len(td.synced_groupnorms(vae.decoder))
    # Each tile parks at each norm at least its GroupNorm input and the residual it will add back.
    assert len(parked) >= 2 * norms * 9, (len(parked), norms)
    assert all(p.dtype == torch.float32 for p in vae.parameters())  # the model is never parked


def test_a_failing_tile_stops_the_others_and_leaves_no_thread():
    import threading

    vae = _PointwiseVAE().eval()
    before = threading.active_count()
    calls = []

    def fail_on_third(module, args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyError("boom")

    h = vae.decoder.b.register_forward_pre_hook(fail_on_third)  # between the two GroupNorms
    try:
        with pytest.raises(KeyError, match="boom"):
            synced_tiled_decode(vae, torch.randn(1, 4, 40, 40), 16)
    finally:
        h.remove()
    assert len(calls) == 3 and threading.active_count() == before
    assert all("forward" not in m.__dict__ for m in vae.modules())


def test_ldm_autoencoder_tiles_once_per_layer_and_keeps_attention_per_tile():
    from scalecrafter_video.models.ldm_autoencoder import AutoencoderKL

    torch.manual_seed(0)
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
                "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
    vae = AutoencoderKL(ddconfig, embed_dim=4).eval()
    names = [n for n, m in vae.decoder.named_modules() if isinstance(m, nn.GroupNorm)]
    synced = td.synced_groupnorms(vae.decoder)
    assert "mid.attn_1.norm" in names and len(synced) == len(names) - 1
    z = _smooth(1, 40, seed=7)
    with torch.no_grad():
        ref = vae.decode(z)
        plain = _count_calls(vae.decoder, lambda: vae.decoder(vae.post_quant_conv(z)))
    tiled_counts = _count_calls(vae.decoder, lambda: synced_tiled_decode(vae, z, 16))
    assert tiled_counts == {k: 9 * v for k, v in plain.items()}
    tiled = synced_tiled_decode(vae, z, 16)
    own = synced_tiled_decode(vae, z, 16, sync=False)
    assert tiled.shape == ref.shape == (1, 3, 80, 80)
    assert (tiled - ref).abs().mean() < 0.6 * (own - ref).abs().mean()
    torch.testing.assert_close(synced_tiled_decode(vae, z[..., :16, :16], 16), vae.decode(z[..., :16, :16]))


@pytest.mark.parametrize("offset", [0.0, 3.0, 1e3])
def test_tile_statistics_match_the_two_pass_ones(offset):
    """One-pass sums where they are exact, the two-pass variance where the mean dwarfs the spread."""
    norm = nn.GroupNorm(4, 8)
    x = torch.randn(2, 8, 9, 11, generator=torch.Generator().manual_seed(0)) * 0.5 + offset
    n, mean, var = gn.tile_statistics(norm, x)
    ref = x.double().reshape(2, 4, -1)
    assert n == ref.shape[-1]
    torch.testing.assert_close(mean.double(), ref.mean(-1), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(var.double(), ref.var(-1, unbiased=False), rtol=1e-5, atol=1e-7)


def test_low_memory_decode_holds_one_tile_and_pools_the_same(tiny):
    """low_memory: each decoder call ends (measuring passes stop at a GroupNorm) before the next
    begins, so one tile's activations are alive at a time; same statistics, same output."""
    vae = tiny.vae(0)
    z = _smooth(1, 40, seed=9)
    active, most, calls = [0], [0], []

    def pre(module, args):
        active[0] += 1
        most[0] = max(most[0], active[0])
        calls.append(1)

    def leave(module, args, out=None):
        active[0] -= 1

    # The measuring passes leave the decoder by an exception: count the exits in the GroupNorm
    # routing instead of a forward hook (which an exception skips).
    class Exit(td._Stop):
        def __init__(self, *a):
            active[0] -= 1
            super().__init__(*a)

    handles = [vae.decoder.register_forward_pre_hook(pre), vae.decoder.register_forward_hook(leave)]
    try:
        lockstep = synced_tiled_decode(vae, z, 16)
        assert most[0] == 9  # lockstep: every tile is inside the decoder at once
        most[0], calls[:] = 0, []
        import unittest.mock

        with unittest.mock.patch.object(td, "_Stop", Exit):
            low = synced_tiled_decode(vae, z, 16, low_memory=True)
    finally:
        for h in handles:
            h.remove()
    assert most[0] == 1 and active[0] == 0
    norms = len(td.synced_groupnorms(vae.decoder))
    assert len(calls) == (norms + 1) * 9  # one measuring pass per GroupNorm, then the final pass
    torch.testing.assert_close(low, lockstep, rtol=1e-5, atol=1e-5)
    assert all("forward" not in m.__dict__ for m in vae.modules())
