"""VideoCrafter UNet and the OpenCLIP text tower: checkpoint layout, structure facts, forward semantics."""

from __future__ import annotations

import pytest
import torch

from scalecrafter_video.errors import ConfigError
from scalecrafter_video.models.ldm_autoencoder import AutoencoderKL
from scalecrafter_video.models.open_clip_text import OpenCLIPTextEncoder, open_clip_token_ids
from scalecrafter_video.models.videocrafter import UNetModel


@pytest.mark.parametrize("config, recorded", [("inference_t2v_512_v2.0", "videocrafter_512_v20"),
                                              ("inference_t2v_512_v1.0", "videocrafter_512_v10")])
def test_real_config_matches_recorded_parameter_names_and_shapes(config, recorded, ldm):
    params = ldm.real_params(f"configs/videocrafter/{config}.yaml")
    expected = ldm.frozen_shapes(recorded)
    with torch.device("meta"):
        unet = UNetModel(**params["unet_config"]["params"])
        vae = AutoencoderKL(**params["first_stage_config"]["params"])
        text = OpenCLIPTextEncoder()  # ViT-H-14 text tower defaults
    got = {f"model.diffusion_model.{k}": list(v.shape) for k, v in unet.state_dict().items()}
    got |= {f"first_stage_model.{k}": list(v.shape) for k, v in vae.state_dict().items()}
    got |= {f"cond_stage_model.model.{k}": list(v.shape) for k, v in text.state_dict().items()}
    assert got == expected
    unet_keys = [k for k in got if k.startswith("model.")]
    assert unet_keys == [k for k in expected if k.startswith("model.")]  # same registration order


def test_v2_structure_facts(ldm):
    """88 Conv3d (3,1,1) under ``temopral_conv``; every other 3x3 conv is a per-frame Conv2d."""
    params = ldm.real_params("configs/videocrafter/inference_t2v_512_v2.0.yaml")["unet_config"]["params"]
    with torch.device("meta"):
        unet = UNetModel(**params)
    conv3d = {n: m for n, m in unet.named_modules() if isinstance(m, torch.nn.Conv3d)}
    assert len(conv3d) == 88
    assert all(".temopral_conv.conv" in n and m.kernel_size == (3, 1, 1) for n, m in conv3d.items())
    conv2d = {n for n, m in unet.named_modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)}
    assert {"input_blocks.0.0", "out.2", "middle_block.0.in_layers.2", "middle_block.3.out_layers.3",
            "output_blocks.2.1.conv", "output_blocks.5.3.conv", "output_blocks.8.3.conv"} <= conv2d
    assert hasattr(unet, "init_attn") and hasattr(unet, "fps_embedding")
    assert not any("relative_position" in n for n, _ in unet.named_parameters())


def test_forward_shape_and_fps_conditioning(ldm):
    unet = ldm.videocrafter_unet()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 4, 8, 8, generator=g)
    ctx = torch.randn(2, 5, 64, generator=g)
    t = torch.tensor([900, 30])
    with torch.no_grad():
        a = unet(x, t, context=ctx, fps=28)
        b = unet(x, t, context=ctx, fps=torch.tensor([28, 28]))
        c = unet(x, t, context=ctx, fps=8)
    assert a.shape == x.shape
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-4
    v1 = ldm.videocrafter_unet(v2=False)
    with torch.no_grad():  # without fps_cond the value is ignored
        assert torch.equal(v1(x, t, context=ctx, fps=8), v1(x, t, context=ctx, fps=28))


def test_temporal_conv_mixes_frames_only_within_a_sample(ldm):
    unet = ldm.videocrafter_unet(temporal_attention=False, addition_attention=False)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 4, 8, 8, generator=g)
    ctx = torch.randn(2, 5, 64, generator=g)
    t = torch.tensor([500, 500])
    with torch.no_grad():
        base = unet(x, t, context=ctx)
        x2 = x.clone()
        x2[0, :, 1] += 1.0
        moved = unet(x2, t, context=ctx)
    assert (moved[0, :, 0] - base[0, :, 0]).abs().max() > 1e-4  # the temporal conv reaches frame 0
    assert torch.allclose(moved[1], base[1], atol=1e-6)  # sample 1 is untouched


def test_without_temporal_layers_frames_are_independent(ldm):
    unet = ldm.videocrafter_unet(temporal_conv=False, temporal_attention=False, addition_attention=False)
    x = torch.randn(1, 4, 3, 8, 8)
    ctx = torch.randn(1, 5, 64)
    with torch.no_grad():
        whole = unet(x, torch.tensor([7]), context=ctx)
        single = unet(x[:, :, 1:2], torch.tensor([7]), context=ctx)
    assert torch.allclose(whole[:, :, 1:2], single, atol=1e-4)


def test_conv_projections_causal_and_cross_temporal_attention_run(ldm):
    unet = ldm.videocrafter_unet(use_linear=False, use_causal_attention=True, temporal_selfatt_only=False)
    assert isinstance(unet.input_blocks[1][2].proj_in, torch.nn.Conv1d)
    x = torch.randn(1, 4, 4, 8, 8)
    with torch.no_grad():
        out = unet(x, torch.tensor([3]), context=torch.randn(1, 5, 64))
    assert torch.isfinite(out).all() and out.shape == x.shape


def test_features_adapter_count_is_checked(ldm):
    unet = ldm.videocrafter_unet()
    x = torch.randn(1, 4, 2, 8, 8)
    with pytest.raises(ValueError, match="features_adapter"):
        unet(x, torch.tensor([3]), context=torch.randn(1, 5, 64), features_adapter=[torch.zeros(1)] * 5)


@pytest.mark.parametrize("overrides, message", [({"dims": 3}, "dims: 2"), ({"num_head_channels": -1}, "num_heads")])
def test_bad_configs_are_clear_errors(overrides, message, ldm):
    with pytest.raises(ConfigError, match=message):
        ldm.videocrafter_unet(**overrides)


def test_open_clip_text_penultimate_layer_and_sizes_from_weights(ldm):
    enc = ldm.randomize_(OpenCLIPTextEncoder(width=64, layers=3, heads=1, vocab_size=514, embed_dim=32), 0)
    rebuilt = OpenCLIPTextEncoder.from_state_dict(enc.state_dict())
    rebuilt.load_state_dict(enc.state_dict())
    assert len(rebuilt.transformer.resblocks) == 3 and rebuilt.context_length == 77
    tokens = torch.randint(0, 514, (2, 77))
    with torch.no_grad():
        pen = rebuilt(tokens)
        rebuilt.layer = "last"
        last = rebuilt(tokens)
        manual = enc.token_embedding(tokens) + enc.positional_embedding
        for block in enc.transformer.resblocks[:2]:
            manual = block(manual, enc.attn_mask)
        manual = enc.ln_final(manual)
    assert torch.allclose(pen, manual, atol=1e-6)
    assert (pen - last).abs().max() > 1e-3
    with torch.no_grad():  # causal: a later token never changes an earlier position
        t2 = tokens.clone()
        t2[:, 10] = (t2[:, 10] + 1) % 514
        assert torch.allclose(enc(t2)[:, :10], enc(tokens)[:, :10], atol=1e-6)


def test_open_clip_tokenisation_rules(tmp_path, ldm):
    from transformers import CLIPTokenizer

    ldm.write_tokenizer(tmp_path)
    tok = CLIPTokenizer.from_pretrained(str(tmp_path))
    ids = open_clip_token_ids(tok, ["ab", "x" * 200])
    sot, eot = tok.bos_token_id, tok.eos_token_id
    assert ids.shape == (2, 77)
    assert ids[0, :4].tolist() == [sot, *tok("ab", add_special_tokens=False)["input_ids"], eot]
    assert ids[0, 4:].eq(0).all()  # OpenCLIP pads with 0, not with <|endoftext|>
    assert ids[1, 0] == sot and ids[1, -1] == eot and ids[1, 1:-1].ne(0).all()
