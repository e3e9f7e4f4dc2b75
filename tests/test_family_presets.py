"""The family presets resolve on each family's real UNet layout (default configs, built on the meta
device: real module names and shapes, no memory), dilate only spatial convs, and equal `auto`."""

import pytest
import torch

from scalecrafter_video import ScaleCrafterConfig, apply_scalecrafter, remove_scalecrafter
from scalecrafter_video.engine import spatial_convs, unet_levels
from scalecrafter_video.engine.layers import is_temporal_path


def _unet(name):
    import diffusers

    with torch.device("meta"):
        if name == "animatediff":
            return diffusers.UNetMotionModel()  # SD 1.5 layout + motion modules
        if name == "svd":
            return diffusers.UNetSpatioTemporalConditionModel()
        return diffusers.I2VGenXLUNet()


@pytest.mark.parametrize("preset,family", [
    ("animatediff/1024x1024", "animatediff"), ("animatediff/1024x576", "animatediff"),
    ("svd/2048x1152", "svd"), ("i2vgen-xl/2560x1408", "i2vgen-xl"),
])
def test_family_preset_applies_to_the_real_layout(preset, family):
    unet = _unet(family)
    cfg = ScaleCrafterConfig.preset(preset)
    apply_scalecrafter(unet, cfg)
    patched = [n for n, m in unet.named_modules() if "_conv_forward" in m.__dict__]
    remove_scalecrafter(unet)
    assert patched and not any(is_temporal_path(n) for n in patched)
    assert not any(n.startswith(("conv_in", "conv_out", "image_latents", "transformer_in")) for n in patched)
    assert len(patched) == len([s for s in spatial_convs(unet) if not s.key.startswith(("down_blocks.0.", "up_blocks.3."))])
    auto = ScaleCrafterConfig.auto(cfg.train_size, cfg.target_size, num_levels=unet_levels(unet))
    assert auto.dilation == cfg.dilation and auto.dilate_tau == cfg.dilate_tau


def test_svd_temporal_convs_are_never_candidates():
    sites = spatial_convs(_unet("svd"))
    assert sites and all("temporal_res_block" not in s.name and "time_mixer" not in s.name for s in sites)
    assert all(s.module.kernel_size[-2:] == (3, 3) for s in sites)
