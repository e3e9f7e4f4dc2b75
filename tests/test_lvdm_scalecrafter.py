"""ScaleCrafter on the LVDM and VideoCrafter UNets: name mapping, presets, spatial-only property."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scalecrafter_video import ScaleCrafterConfig, apply_scalecrafter, denoising_step, remove_scalecrafter
from scalecrafter_video.models import lvdm as lvdm_module
from scalecrafter_video.models import videocrafter as vc_module
from scalecrafter_video.models.ldm_pipeline import LDMVideoPipeline
from scalecrafter_video.engine import resolve_table, spatial_convs

PRESETS = {
    "lvdm": ["lvdm-t2v/512x512", "lvdm-t2v/1024x1024"],
    "videocrafter": ["videocrafter2/640x1024"],
}
REAL = {"lvdm": "configs/lvdm/t2v.yaml", "videocrafter": "configs/videocrafter/inference_t2v_512_v2.0.yaml"}


def real_unet(ldm, family: str):
    params = ldm.real_params(REAL[family])["unet_config"]["params"]
    cls = lvdm_module.UNetModel if family == "lvdm" else vc_module.UNetModel
    with torch.device("meta"):
        return cls(**params)


def tiny_unet(ldm, family: str, seed=0):
    return ldm.lvdm_unet(seed) if family == "lvdm" else ldm.videocrafter_unet(True, seed)


def temporal_modules(unet):
    """Every module inside a temporal layer: LVDM attn*_tmp, VideoCrafter temopral_conv /
    TemporalTransformer / init_attn."""
    out = {}
    for name, module in unet.named_modules():
        parts = name.split(".")
        inside = {"attn1_tmp", "attn2_tmp", "temopral_conv", "init_attn"} & set(parts)
        if inside or isinstance(module, vc_module.TemporalTransformer):
            out[name] = module
    for name, module in unet.named_modules():
        if any(name.startswith(p + ".") for p in list(out)):
            out[name] = module
    return out


@pytest.mark.parametrize("family", ["lvdm", "videocrafter"])
def test_real_unets_expose_the_fifty_sd_conv_names(family, ldm):
    sites = spatial_convs(real_unet(ldm, family))
    keys = {s.key for s in sites}
    assert len(sites) == len(keys) == 50
    assert {"down_blocks.0.resnets.0.conv1", "down_blocks.2.downsamplers.0.conv", "mid_block.resnets.1.conv2",
            "up_blocks.0.upsamplers.0.conv", "up_blocks.3.resnets.2.conv2"} <= keys
    names = {s.key: s.name for s in sites}
    mid_last = "middle_block.2" if family == "lvdm" else "middle_block.3"
    assert names["mid_block.resnets.1.conv1"] == f"{mid_last}.in_layers.2"
    up = "output_blocks.5.2.conv" if family == "lvdm" else "output_blocks.5.3.conv"
    assert names["up_blocks.1.upsamplers.0.conv"] == up
    assert not any("temopral_conv" in s.name or "tmp" in s.name for s in sites)


@pytest.mark.parametrize("family, preset", [(f, p) for f, ps in PRESETS.items() for p in ps])
def test_presets_resolve_on_the_real_unets(family, preset, ldm):
    cfg = ScaleCrafterConfig.preset(preset)
    sites = spatial_convs(real_unet(ldm, family))
    for table in (cfg.dilation, cfg.ndcfg_dilation):
        resolved = resolve_table(table, sites, preset)
        assert set(resolved) <= {s.key for s in sites}
    native = (256, 256) if family == "lvdm" else (320, 512)
    assert tuple(cfg.train_size) == native
    assert max(t / n for t, n in zip(cfg.target_size, native)) == (4 if "1024x1024" in preset else 2)


def _cfg(train, target, **kw):
    return ScaleCrafterConfig.auto(train, target, num_levels=2, **kw)


@pytest.mark.parametrize("family", ["lvdm", "videocrafter"])
def test_spatial_only_property(family, ldm):
    """After apply + a forward at 2x inside the window: temporal convs, temporal attention and relative
    positions are untouched (weights, no patch, no hooks, plain outputs); the (1,3,3)/3x3 convs are dilated."""
    unet = tiny_unet(ldm, family)
    train = (64, 64) if family == "lvdm" else (64, 128)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    temporal = temporal_modules(unet)
    assert temporal
    rel = [n for n in before if "relative_position" in n]
    if family == "lvdm":
        assert rel  # LVDM: relative positions in both temporal attentions
    else:
        assert any(isinstance(m, torch.nn.Conv3d) and m.kernel_size == (3, 1, 1) for m in temporal.values())

    config = _cfg(train, (2 * train[0], 2 * train[1]), attn_scale=True).replace(dilate_tau=1.0)
    apply_scalecrafter(unet, config)
    dilated = [s for s in spatial_convs(unet) if "_conv_forward" in s.module.__dict__]
    assert dilated and all(s.key.startswith(("down_blocks.1", "mid_block", "up_blocks.0")) for s in dilated)

    checked = {"temporal": 0, "dilated": 0}

    def temporal_conv_hook(module, inputs, output):
        plain = F.conv3d(inputs[0], module.weight, module.bias, padding=module.padding)
        assert torch.equal(output, plain)
        checked["temporal"] += 1

    def dilated_hook(module, inputs, output):
        x = inputs[0]
        if isinstance(module, torch.nn.Conv3d):
            ref = F.conv3d(x, module.weight, module.bias, stride=module.stride, padding=(0, 2, 2), dilation=(1, 2, 2))
        else:
            ref = F.conv2d(x, module.weight, module.bias, stride=module.stride, padding=2, dilation=2)
        if ref.shape == output.shape:  # stride-1 convs: exactly a dilation-2 conv
            assert torch.allclose(output, ref, atol=1e-4)
            checked["dilated"] += 1

    handles = [m.register_forward_hook(temporal_conv_hook) for m in temporal.values() if isinstance(m, torch.nn.Conv3d)]
    handles += [s.module.register_forward_hook(dilated_hook) for s in dilated]
    g = torch.Generator().manual_seed(0)
    h, w = train[0] // 4, train[1] // 4  # 2x the native latent size
    x = torch.randn(1, 4, 4, h, w, generator=g)
    ctx = torch.randn(1, 5, 32 if family == "lvdm" else 64, generator=g)
    try:
        with torch.no_grad(), denoising_step(0, 50, cfg=False):  # a bare UNet: the caller says the step
            out = unet(x, torch.tensor([990]), context=ctx)
    finally:
        for handle in handles:
            handle.remove()
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert checked["dilated"] > 0
    assert checked["temporal"] == (0 if family == "lvdm" else 8 * 4)  # 2 + 2 + 4 ResBlocks x 4 temporal convs
    for name, module in temporal.items():
        assert "_conv_forward" not in module.__dict__, name
        assert not module._forward_hooks and not module._forward_pre_hooks, name
    after = unet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    remove_scalecrafter(unet)
    assert not any("_conv_forward" in m.__dict__ for m in unet.modules())


@pytest.mark.parametrize("family", ["lvdm", "videocrafter"])
def test_remove_restores_outputs_bitwise(family, ldm):
    unet = tiny_unet(ldm, family, seed=4)
    x = torch.randn(2, 4, 2, 16, 16)
    ctx = torch.randn(2, 5, 32 if family == "lvdm" else 64)
    t = torch.tensor([900, 900])
    with torch.no_grad(), denoising_step(5, 50, cfg=False):
        ref = unet(x, t, context=ctx)
        apply_scalecrafter(unet, _cfg((64, 64), (128, 128)).replace(dilate_tau=1.0))
        changed = unet(x, t, context=ctx)
        remove_scalecrafter(unet)
        again = unet(x, t, context=ctx)
    assert (changed - ref).abs().max() > 1e-4
    assert torch.equal(ref, again)


def test_pipeline_cfg_layout_triggers_noise_damped_guidance(lvdm_folder):
    """The pipeline's [uncond, cond] batch is recognised: the core adds a damped unconditional pass."""
    ckpt, cfg, clip = lvdm_folder
    pipe = LDMVideoPipeline.from_checkpoint(ckpt, cfg, clip_path=clip)
    batches = []
    hook = pipe.unet.register_forward_pre_hook(lambda m, a, kw: batches.append(a[0].shape[0]), with_kwargs=True)
    config = ScaleCrafterConfig.auto(pipe.train_size, (256, 256), num_levels=2, ndcfg=True)
    assert config.ndcfg_tau > 0
    apply_scalecrafter(pipe, config)
    try:
        video = pipe("a cat", height=256, width=256, num_frames=2, num_inference_steps=2, progress=False,
                     generator=torch.Generator().manual_seed(0))
    finally:
        remove_scalecrafter(pipe)
        hook.remove()
    assert video.shape == (1, 2, 256, 256, 3)
    assert batches[:2] == [2, 1]  # first step (t = 501, inside the window): CFG batch, then the damped pass
