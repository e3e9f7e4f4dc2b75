"""Schedules as data: YAML, presets, validation, and the automatic schedule vs the paper's tables."""

import re
from fnmatch import fnmatchcase

import pytest

from scalecrafter_video import ConfigError, ScaleCrafterConfig, list_presets
from scalecrafter_video.engine import resolve_table, spatial_convs

@pytest.fixture(scope="module")
def sites(tiny):
    """The spatial convs of the SD 1.5/2.1 block layout: 4 levels, the same 50 conv names."""
    return spatial_convs(tiny.unet2d())


def resolved(table, sites):
    return resolve_table(table, sites, "dilation")


def official(levels: dict, sites) -> dict:
    """Per-module factors from the paper's table columns (see the method reference, Sec. 8)."""
    out = {}
    for site in sites:
        k = site.key
        parts = k.split(".")
        block, idx = parts[0], int(parts[1]) if parts[0] != "mid_block" else None
        col = {"down_blocks": f"down.{idx}", "up_blocks": f"up.{idx}", "mid_block": "mid"}[block]
        if "downsamplers" in k and f"{col} ds" in levels:
            col = f"{col} ds"
        value = levels.get(col)
        if value:
            out[k] = float(value)
    return out


TABLE_1024 = {"down.1": 2, "down.2": 2, "down.3": 2, "mid": 2, "up.0": 2, "up.1": 2, "up.2": 2}
TABLE_1280 = {c: 2.5 for c in TABLE_1024}
TABLE_2048 = {"down.1": 2, "down.2": 3, "down.3": 4, "mid": 4, "up.0": 4, "up.1": 3, "up.2": 2}
DAMPED_2048 = {"down.2": 3, "down.3": 4, "mid": 4, "up.0": 4, "up.1": 3}


@pytest.mark.parametrize("target,table,tau,progressive,damped", [
    ((1024, 1024), TABLE_1024, 0.6, False, None),
    ((1280, 1280), TABLE_1280, 0.7, False, None),
    ((2048, 2048), TABLE_2048, 0.7, True, DAMPED_2048),
])
def test_auto_schedule_reproduces_the_paper_tables(target, table, tau, progressive, damped, sites):
    cfg = ScaleCrafterConfig.auto((512, 512), target, num_levels=4)
    assert resolved(cfg.dilation, sites) == official(table, sites)
    assert cfg.dilate_tau == tau and cfg.progressive is progressive
    if damped:
        assert resolved(cfg.ndcfg_dilation, sites) == official(damped, sites) and cfg.ndcfg_tau == tau
    else:
        assert cfg.ndcfg_tau == 0 and not cfg.ndcfg_dilation
    name = f"sd1.5/{target[1]}x{target[0]}"
    preset = ScaleCrafterConfig.preset(name)
    assert resolved(preset.dilation, sites) == resolved(cfg.dilation, sites)
    assert resolved(preset.ndcfg_dilation, sites) == resolved(cfg.ndcfg_dilation, sites)


def test_sd21_2048_preset_keeps_its_official_differences(sites):
    cfg = ScaleCrafterConfig.preset("sd2.1/2048x2048")
    table = resolved(cfg.dilation, sites)
    assert "down_blocks.1.resnets.0.conv1" not in table
    assert table["down_blocks.2.downsamplers.0.conv"] == 4 and table["up_blocks.3.resnets.2.conv2"] == 2
    assert "up_blocks.3.upsamplers.0.conv" not in table
    assert cfg.dilate_tau == 0.74  # 37 of 50 steps


def test_auto_is_identity_at_or_below_native_and_for_baselines():
    assert ScaleCrafterConfig.auto(256, 256).uses_redilation is False
    assert ScaleCrafterConfig.auto(256, 512, method="direct").dilation == {}
    assert ScaleCrafterConfig.auto(256, 512, method="attn-sf").uses_attn_scale


def test_every_preset_resolves_on_its_model_family(tiny, sites):
    sdxl = tiny.unet2d(channels=(16, 32, 32))
    sdxl_sites = spatial_convs(sdxl)
    video_sites = spatial_convs(tiny.unet3d())
    names = list_presets()
    assert {"sd1.5/2048x2048", "sdxl/4096x4096", "modelscope/1024x1024", "zeroscope/1152x640"} <= set(names)
    for name in names:
        cfg = ScaleCrafterConfig.preset(name)
        family = sdxl_sites if name.startswith("sdxl") else video_sites if name.startswith(("modelscope", "zeroscope")) else sites
        for table in (cfg.dilation, cfg.ndcfg_dilation):
            resolve_table(table, family, name)
        assert all(any(fnmatchcase(s.key, g) for s in family) for g in cfg.disperse)


def test_sdxl_tables_naming_missing_layers_are_refused(tiny):
    sdxl_sites = spatial_convs(tiny.unet2d(channels=(16, 32, 32)))
    with pytest.raises(ConfigError, match="down_blocks.3"):
        resolve_table({"down_blocks.3.*": 4}, sdxl_sites, "dilation")


def test_video_presets_share_the_image_tables():
    ms = ScaleCrafterConfig.preset("modelscope/1024x1024")
    sd = ScaleCrafterConfig.preset("sd2.1/2048x2048")
    assert ms.dilation == sd.dilation and ms.ndcfg_dilation == sd.ndcfg_dilation
    assert ms.train_size == (256, 256) and ms.target_size == (1024, 1024)


def test_yaml_round_trip(tmp_path):
    cfg = ScaleCrafterConfig.auto((320, 576), (640, 1152), disperse=True, attn_scale=True)
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    assert ScaleCrafterConfig.from_yaml(path).to_dict() == {**cfg.to_dict(), "name": cfg.name}


@pytest.mark.parametrize("text,match", [
    ("dilation: [1, 2\n", "malformed YAML"),
    ("dilations: {a: 2}\n", "unknown config key"),
    ("dilate_tau: 35\n", "fractions of the trajectory"),
    ("dilation: {mid_block.*: 0.5}\n", ">= 1"),
    ("method: magic\n", "method must be one of"),
    ("- just\n- a list\n", "must be a mapping"),
])
def test_malformed_configs_are_one_clear_error(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        ScaleCrafterConfig.from_yaml(path)
    assert "\n" not in str(info.value)


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ConfigError, match="sd2.1/2048x2048"):
        ScaleCrafterConfig.preset("sd9/1x1")


def test_auto_is_per_axis_for_non_square_targets_and_the_preset_keeps_the_paper_table(sites):
    """2048x1024 from 512^2: the height ratio is 2 (every inner level at 2), the width ratio 4 (the
    2048 staircase); taus and the decay follow the larger ratio. The shipped sd1.5/2048x1024 preset keeps
    the official isotropic table."""
    cfg = ScaleCrafterConfig.auto((512, 512), (1024, 2048), num_levels=4)
    width = official(TABLE_2048, sites)
    assert resolved(cfg.dilation, sites) == {k: (2.0, w) if w != 2.0 else 2.0 for k, w in width.items()}
    assert cfg.dilate_tau == 0.7 and cfg.progressive is True
    assert resolved(ScaleCrafterConfig.preset("sd1.5/2048x1024").dilation, sites) == width


def test_auto_leaves_a_side_at_its_training_size_undilated():
    cfg = ScaleCrafterConfig.auto((32, 32), (32, 96), num_levels=3, vae_scale_factor=1)
    assert cfg.dilation and all(isinstance(f, tuple) and f[0] == 1.0 for f in cfg.dilation.values())
    assert cfg.dilation["mid_block.*"] == (1.0, 3.0) and cfg.dilation["down_blocks.1.*"] == (1.0, 2.0)
    square = ScaleCrafterConfig.auto((32, 32), (96, 96), num_levels=3, vae_scale_factor=1)
    assert {g: (f, f) for g, f in square.dilation.items()} == {g: (f[1], f[1]) for g, f in cfg.dilation.items()}
    with pytest.raises(ConfigError, match="per-axis"):
        ScaleCrafterConfig.auto((32, 32), (32, 96), num_levels=3, disperse=True)


# --------------------------------------------------------------------------- staged schedules
STAGED = {
    "stages": [
        {"until": 0.3, "dilation": {"mid_block.*": [1, 3]}},
        {"until": 0.6, "dilation": {"mid_block.*": 2}, "ndcfg_dilation": {"mid_block.*": 1.5}},
    ],
    "ndcfg_tau": 0.5,
}


def test_staged_schedule_round_trips_through_yaml(tmp_path):
    cfg = ScaleCrafterConfig.from_dict(STAGED)
    assert cfg.dilate_tau == 0.6  # the last stage's end
    path = tmp_path / "staged.yaml"
    path.write_text(cfg.to_yaml())
    back = ScaleCrafterConfig.from_yaml(path)
    assert back.stages == cfg.stages and back.to_dict() == {**cfg.to_dict(), "name": "staged"}
    assert back.stages[0]["dilation"] == {"mid_block.*": (1.0, 3.0)}  # per-axis factors survive


def test_stage_index_follows_the_tau_rule():
    from scalecrafter_video.engine.position import stage_index
    from scalecrafter_video.trajectory import StepInfo

    untils = [s["until"] for s in ScaleCrafterConfig.from_dict(STAGED).stages]
    assert [stage_index(StepInfo(i, 10), untils) for i in range(10)] == [0] * 3 + [1] * 3 + [None] * 4
    assert [stage_index(StepInfo(i, 5), untils) for i in range(5)] == [0, 0, 1, None, None]  # 1.5 -> 2, 3
    assert stage_index(StepInfo(0, 4), [0.01]) == 0  # any stage > 0 covers at least step 0


@pytest.mark.parametrize("bad,fragment", [
    ({"stages": [{"until": 0.5}, {"until": 0.4}]}, "increasing order"),
    ({"stages": [{"dilation": {}}]}, "needs until"),
    ({"stages": [{"until": 0.5, "tau": 1}]}, "unknown key"),
    ({"dilation": {"mid_block.*": 2}, "stages": [{"until": 0.5}]}, "not both"),
    ({"stages": [{"until": 0.5}], "dilate_tau": 0.7}, "leave it out"),
    ({"stages": [{"until": 0.5}], "progressive": True}, "progressive"),
    ({"stages": "fast"}, "must be a list"),
    ({"stages": [{"until": 1.5}]}, "(0, 1]"),
    ({"stages": [{"until": 0.5, "dilation": {"mid_block.*": 0.5}}]}, ">= 1"),
])
def test_bad_stages_are_one_clear_error(bad, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        ScaleCrafterConfig.from_dict(bad)
