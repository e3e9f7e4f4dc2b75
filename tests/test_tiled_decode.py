"""Synchronized-GroupNorm tiled VAE decoding (method notes §7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scalecrafter_video.tiled_decode import _Sync, synced_tiled_decode, tile_starts


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


def test_pooled_statistics_follow_the_method_formula():
    torch.manual_seed(0)
    norm = nn.GroupNorm(2, 4)
    sync = _Sync([norm])
    tiles = [torch.randn(3, 4, 5, 7) * 2 + 1, torch.randn(3, 4, 6, 3) - 0.5, torch.randn(3, 4, 2, 2)]
    for t in tiles:
        with pytest.raises(Exception):  # measuring stops the forward at the norm
            sync.forward(norm, t)
    sync.close_pass()
    mean, var = sync.stats[id(norm)]
    # Independent float64 evaluation of mu = sum n_t/N mu_t, sigma^2 = sum n_t/N m_t n_t/(n_t-1).
    arrays = [t.double().numpy().reshape(3, 2, -1) for t in tiles]
    n = np.array([a.shape[-1] for a in arrays], dtype=np.float64)
    mus = np.stack([a.mean(-1) for a in arrays])
    ms = np.stack([a.var(-1) for a in arrays])
    w = n / n.sum()
    exp_mean = np.einsum("t,tbg->bg", w, mus)
    exp_var = np.einsum("t,tbg->bg", w * n / (n - 1), ms)
    np.testing.assert_allclose(mean.numpy(), exp_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(var.numpy(), exp_var, rtol=1e-5, atol=1e-6)
    # ...and normalising with them reproduces GroupNorm's affine transform with those statistics.
    x = tiles[0]
    y = sync.forward(norm, x)
    xg = x.reshape(3, 2, -1)
    ref = ((xg - mean[..., None]) / torch.sqrt(var[..., None] + norm.eps)).reshape(x.shape)
    ref = ref * norm.weight[None, :, None, None] + norm.bias[None, :, None, None]
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


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
    from scalecrafter_video import tiled_decode as td
    vae = tiny.vae(0)
    z = F.interpolate(torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(0)) * 2, size=(48, 48),
                      mode="bicubic", align_corners=False)
    norms = td._synced_groupnorms(vae.decoder)
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

    def oracle_close(self):
        self.stats[id(self.measuring)] = exact[id(self.measuring)]
        self.measuring, self.pending = None, []

    monkeypatch.setattr(td._Sync, "close_pass", oracle_close)
    with torch.no_grad():
        oracle = synced_tiled_decode(vae, z, 24)
    pooled_err = (pooled - ref).abs().mean().item()
    oracle_err = (oracle - ref).abs().mean().item()
    assert oracle_err <= pooled_err < 1.5 * oracle_err, (pooled_err, oracle_err)
