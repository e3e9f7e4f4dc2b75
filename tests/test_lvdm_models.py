"""LVDM UNet and the LDM autoencoder: checkpoint layout, structure facts, forward semantics."""

from __future__ import annotations

import pytest
import torch

from scalecrafter_video.errors import ConfigError
from scalecrafter_video.models.ldm_autoencoder import AutoencoderKL
from scalecrafter_video.models.lvdm import UNetModel


def test_real_config_matches_recorded_parameter_names_and_shapes(ldm):
    """text2video.yaml: every key, shape and the key order equal the research model's."""
    params = ldm.real_params("configs/lvdm/t2v.yaml")
    expected = ldm.frozen_shapes("lvdm_text2video")
    with torch.device("meta"):
        unet = UNetModel(**params["unet_config"]["params"])
        vae = AutoencoderKL(**params["first_stage_config"]["params"])
    got = {f"model.diffusion_model.{k}": list(v.shape) for k, v in unet.state_dict().items()}
    got |= {f"first_stage_model.{k}": list(v.shape) for k, v in vae.state_dict().items()}
    assert list(got) == [k for k in expected if k in got]  # same order inside each part
    assert got == expected


def test_real_config_convs_are_spatial_only(ldm):
    """LVDM t2v: every 3x3 conv is Conv3d (1,3,3) and no conv mixes frames."""
    params = ldm.real_params("configs/lvdm/t2v.yaml")["unet_config"]["params"]
    with torch.device("meta"):
        unet = UNetModel(**params)
    convs = {n: m for n, m in unet.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))}
    spatial = {n for n, m in convs.items() if m.kernel_size == (1, 3, 3)}
    assert all(isinstance(m, torch.nn.Conv3d) for m in convs.values())
    assert all(m.kernel_size in {(1, 3, 3), (1, 1, 1)} for m in convs.values())
    assert {"input_blocks.0.0", "out.2", "input_blocks.3.0.op", "output_blocks.2.1.conv", "output_blocks.5.2.conv"} <= spatial
    assert convs["input_blocks.3.0.op"].stride == (1, 2, 2)
    # 8 input + 2 middle + 12 output ResBlocks, 2 convs each; 3 down, 3 up; conv_in, conv_out
    assert len(spatial) == 2 * 22 + 3 + 3 + 2
    tables = [m for n, m in unet.named_parameters() if "relative_position" in n]
    assert tables and all(t.shape[0] == 2 * 16 + 1 for t in tables)


def test_forward_shape_dtype_and_determinism(ldm):
    unet = ldm.lvdm_unet()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 4, 8, 8, generator=g)
    ctx = torch.randn(2, 5, 32, generator=g)
    t = torch.tensor([999, 1])
    with torch.no_grad():
        a = unet(x, t, context=ctx)
        b = unet(x, t, None, ctx)  # positional order of the research signature
    assert a.shape == x.shape and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert a.abs().max() > 1e-3  # randomised weights: no zero-initialised shortcut to the output


def test_temporal_attention_mixes_frames_and_uses_relative_positions(ldm):
    unet = ldm.lvdm_unet()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 4, 8, 8, generator=g)
    ctx = torch.randn(1, 5, 32, generator=g)
    t = torch.tensor([500])
    with torch.no_grad():
        base = unet(x, t, context=ctx)
        x2 = x.clone()
        x2[:, :, 3] += 1.0  # change the last frame only
        moved = unet(x2, t, context=ctx)
        assert (moved[:, :, 0] - base[:, :, 0]).abs().max() > 1e-4  # frame 0 sees frame 3
        table = unet.input_blocks[1][1].transformer_blocks[0].attn1_tmp.relative_position_k.embeddings_table
        table.add_(torch.randn(table.shape, generator=g))  # a constant shift would cancel in the softmax
        assert (unet(x, t, context=ctx) - base).abs().max() > 1e-5


def test_context_is_shared_by_all_frames_and_per_sample(ldm):
    unet = ldm.lvdm_unet()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 4, 4, 8, 8, generator=g)
    c1, c2 = torch.randn(1, 5, 32, generator=g), torch.randn(1, 5, 32, generator=g)
    t = torch.tensor([10, 10])
    with torch.no_grad():
        both = unet(torch.cat([x, x]), t, context=torch.cat([c1, c2]))
        one = unet(x, t[:1], context=c2)
    assert torch.allclose(both[1:], one, atol=1e-4)
    assert (both[0] - both[1]).abs().max() > 1e-4


def test_save_load_round_trip(tmp_path, ldm):
    unet = ldm.lvdm_unet(seed=3)
    torch.save(unet.state_dict(), tmp_path / "unet.pt")
    fresh = UNetModel(**ldm.lvdm_config()["model"]["params"]["unet_config"]["params"]).eval()
    fresh.load_state_dict(torch.load(tmp_path / "unet.pt", weights_only=True))
    x, ctx = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 3, 32)
    with torch.no_grad():
        assert torch.equal(unet(x, torch.tensor([3]), context=ctx), fresh(x, torch.tensor([3]), context=ctx))


def test_scale_shift_norm_resblock_updown_and_class_labels(ldm):
    unet = ldm.lvdm_unet(use_scale_shift_norm=True, resblock_updown=True, num_classes=3)
    x = torch.randn(2, 4, 2, 8, 8)
    with torch.no_grad():
        out = unet(x, torch.tensor([5, 6]), context=torch.randn(2, 3, 32), y=torch.tensor([0, 2]))
    assert out.shape == x.shape
    names = dict(unet.named_modules())
    assert "input_blocks.2.0.h_upd" in names and "input_blocks.2.0.op" not in names  # ResBlock downsampler
    assert names["input_blocks.1.0.emb_layers.1"].out_features == 2 * 32  # scale and shift
    assert unet.label_emb.weight.shape == (3, 4 * 32)
    with pytest.raises(ValueError, match="class-conditional"):
        ldm.lvdm_unet()(x, torch.tensor([5, 6]), context=torch.randn(2, 3, 32), y=torch.tensor([0, 2]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"use_temporal_transformer": False}, "text-to-video"),
        ({"dims": 2}, "dims: 3"),
        ({"context_dim": None}, "context_dim"),
        ({"num_heads": -1}, "num_heads or num_head_channels"),
        ({"nonlinearity_type": "relu"}, "nonlinearity_type"),
        ({"use_linear": True}, "unsupported UNetModel keyword"),
    ],
)
def test_bad_configs_are_clear_errors(overrides, message, ldm):
    with pytest.raises(ConfigError, match=message):
        ldm.lvdm_unet(**overrides)


def test_bad_input_shape_is_a_clear_error(ldm):
    with pytest.raises(ValueError, match="frames, height, width"):
        ldm.lvdm_unet()(torch.randn(1, 4, 8, 8), torch.tensor([1]), context=torch.randn(1, 3, 32))


def test_autoencoder_chunked_decoding_equals_full_decoding(ldm):
    vae = ldm.randomize_(AutoencoderKL(**ldm.VAE_PARAMS), 0, std=0.03).eval()
    z = torch.randn(2, 4, 3, 4, 6)
    with torch.no_grad():
        full = vae.decode_video(z, chunk_size=6)
        single = vae.decode_video(z, chunk_size=1)
        direct = vae.decode(z[:, :, 1])
    assert full.shape == (2, 3, 3, 32, 48)
    assert torch.allclose(full, single, atol=1e-4)
    assert torch.allclose(single[:, :, 1], direct, atol=1e-4)
    with pytest.raises(ValueError, match="chunk_size"):
        vae.decode_video(z, chunk_size=0)


def test_autoencoder_encode_moments_round_trip_shapes(ldm):
    vae = ldm.randomize_(AutoencoderKL(**ldm.VAE_PARAMS), 1, std=0.03).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        mean, logvar = vae.encode_moments(x)
    assert mean.shape == logvar.shape == (1, 4, 4, 4)
    assert logvar.min() >= -30 and logvar.max() <= 20
