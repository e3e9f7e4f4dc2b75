"""apply/remove on whole UNets: exactness, temporal layers untouched, schedule, ndcfg, Attn-SF."""

import copy

import pytest
import torch
import torch.nn.functional as F

from scalecrafter_video import ConfigError, ScaleCrafterConfig, apply_scalecrafter, denoising_step, remove_scalecrafter
from scalecrafter_video.trajectory import StepInfo
from scalecrafter_video.engine import scalecrafter_state, spatial_convs

EMB = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(7))


def _video(h=16, w=16, frames=3, cfg_batch=True, seed=0):
    x = torch.randn(1, 4, frames, h, w, generator=torch.Generator().manual_seed(seed))
    return torch.cat([x, x]) if cfg_batch else x


def _step(t=981, steps=50):
    """The step of timestep ``t`` on a 50-step DDIM trajectory 981, 961, ..., 1 (declared, as own loops do)."""
    return denoising_step(min(max(round((981 - t) / 20), 0), steps - 1), steps, cfg=False)


def _run(unet, x, t=981, emb=EMB, cfg=None):
    """A bare-UNet call at the step of ``t``; a batch of 2 is a ``[uncond, cond]`` CFG batch unless ``cfg=False``."""
    index = min(max(round((981 - t) / 20), 0), 49)
    with torch.no_grad(), denoising_step(index, 50, cfg=(x.shape[0] == 2) if cfg is None else cfg):
        return unet(x, t, encoder_hidden_states=emb[: x.shape[0]]).sample


def _config(**kw):
    base = dict(train_size=(16, 16), dilation={"down_blocks.1.*": 2, "down_blocks.2.*": 2.5, "mid_block.*": 3,
                                               "up_blocks.1.*": 2}, dilate_tau=0.7, vae_scale_factor=1)
    return ScaleCrafterConfig.from_dict({**base, **kw})


@pytest.fixture(scope="module")
def unet3d(tiny):
    return tiny.unet3d()


def _leftovers(unet):
    found = [n for n, m in unet.named_modules() if "_conv_forward" in m.__dict__ or "_scalecrafter_padding" in m.__dict__]
    hooks = [n for n, m in unet.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    return found + hooks + (["_scalecrafter"] if "_scalecrafter" in unet.__dict__ else [])


def test_candidates_are_the_fifty_sd_convs_and_exclude_temporal(unet3d):
    keys = [s.key for s in spatial_convs(unet3d)]
    assert len(keys) == 50 == len(set(keys))
    assert not any("temp" in k or k in ("conv_in", "conv_out") or "shortcut" in k for k in keys)
    assert sum("downsamplers" in k for k in keys) == 3 and sum("upsamplers" in k for k in keys) == 3


def test_unit_dilation_is_exactly_the_original(unet3d):
    x = _video()
    before = _run(unet3d, x)
    apply_scalecrafter(unet3d, _config(dilation={"down_blocks.*": 1, "mid_block.*": 1, "up_blocks.*": 1}))
    assert torch.equal(_run(unet3d, x), before)
    remove_scalecrafter(unet3d)


def test_remove_restores_bitwise_and_leaves_nothing(unet3d):
    x = _video(17, 23)
    before = _run(unet3d, x)
    apply_scalecrafter(unet3d, _config(ndcfg_dilation={"mid_block.*": 2}, ndcfg_tau=0.5, disperse=["mid_block.*"],
                                       disperse_tau=0.5, attn_scale=True))
    during = _run(unet3d, x)
    assert not torch.allclose(during, before)
    remove_scalecrafter(unet3d)
    assert torch.equal(_run(unet3d, x), before)
    assert _leftovers(unet3d) == []
    remove_scalecrafter(unet3d)  # removing twice is a no-op


def test_apply_is_idempotent(unet3d):
    x = _video()
    apply_scalecrafter(unet3d, _config())
    once = _run(unet3d, x)
    n_hooks = len(unet3d._forward_hooks) + len(unet3d._forward_pre_hooks)
    apply_scalecrafter(unet3d, _config())
    assert torch.equal(_run(unet3d, x), once)
    assert len(unet3d._forward_hooks) + len(unet3d._forward_pre_hooks) == n_hooks
    remove_scalecrafter(unet3d)
    assert _leftovers(unet3d) == []


def test_temporal_layers_untouched(unet3d):
    temporal_convs = {n: m for n, m in unet3d.named_modules() if isinstance(m, torch.nn.Conv3d)}
    assert len(temporal_convs) == 88  # 22 TemporalConvLayers x 4, all (3, 1, 1)
    snapshot = {n: (m.weight.clone(), m.dilation, m.padding, m.kernel_size) for n, m in temporal_convs.items()}
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, (i[0], o)))
             for n, m in temporal_convs.items()]
    apply_scalecrafter(unet3d, _config(dilation={"down_blocks.*": 2, "mid_block.*": 2, "up_blocks.*": 2},
                                       attn_scale=True))
    _run(unet3d, _video(32, 32))
    state = scalecrafter_state(unet3d)
    assert len(state.actions) == 0 and len(seen) == 88
    for name, conv in temporal_convs.items():
        weight, dilation, padding, kernel = snapshot[name]
        assert torch.equal(conv.weight, weight) and conv.dilation == dilation and conv.padding == padding
        assert "_conv_forward" not in conv.__dict__
        inp, out = seen[name]
        assert torch.equal(F.conv3d(inp, conv.weight, conv.bias, conv.stride, conv.padding), out)
    temporal_attn = [m for n, m in unet3d.named_modules() if ("temp_attentions" in n or "transformer_in" in n)
                     and isinstance(m, torch.nn.Linear)]
    assert temporal_attn and not any(m._forward_hooks for m in temporal_attn)
    for h in hooks:
        h.remove()
    remove_scalecrafter(unet3d)


def test_spatial_conv_is_a_dilated_conv2d(unet3d):
    conv = unet3d.down_blocks[1].resnets[0].conv1
    captured = {}
    hook = conv.register_forward_hook(lambda m, i, o: captured.update(x=i[0], y=o))
    apply_scalecrafter(unet3d, _config())
    _run(unet3d, _video(16, 16))
    ref = F.conv2d(captured["x"], conv.weight, conv.bias, 1, 2, 2)
    torch.testing.assert_close(captured["y"], ref, rtol=0, atol=1e-5)
    _run(unet3d, _video(16, 16), t=100)  # outside dilate_tau: the original conv
    torch.testing.assert_close(captured["y"], F.conv2d(captured["x"], conv.weight, conv.bias, 1, 1), rtol=0, atol=1e-6)
    hook.remove()
    remove_scalecrafter(unet3d)


@pytest.mark.parametrize("size", [(17, 23), (9, 31), (33, 15)])
def test_odd_latent_sizes_through_whole_unets(unet3d, size, tiny):
    cfg = ScaleCrafterConfig.auto((8, 8), (8 * 4, 8 * 4), num_levels=4, disperse=True, attn_scale=True,
                                  vae_scale_factor=1)
    apply_scalecrafter(unet3d, cfg)
    out = _run(unet3d, _video(*size))
    assert out.shape == (2, 4, 3, *size) and torch.isfinite(out).all()
    remove_scalecrafter(unet3d)
    unet2d = tiny.unet2d()
    apply_scalecrafter(unet2d, cfg.replace(dilation={"down_blocks.1.*": 2.5, "mid_block.*": 3}))
    with torch.no_grad(), _step():
        y = unet2d(torch.randn(1, 4, *size), 981, encoder_hidden_states=EMB[:1]).sample
    assert y.shape == (1, 4, *size)


def test_bad_schedules_are_clear_errors(unet3d):
    with pytest.raises(ConfigError, match="down_blocks.7"):
        apply_scalecrafter(unet3d, _config(dilation={"down_blocks.7.*": 2}))
    with pytest.raises(ConfigError, match="never dilated"):
        apply_scalecrafter(unet3d, _config(dilation={"conv_in": 2}))
    assert _leftovers(unet3d) == []
    broken = copy.deepcopy(unet3d)
    broken.mid_block.resnets[0].conv1.padding_mode = "reflect"
    with pytest.raises(ConfigError, match="padding_mode"):
        apply_scalecrafter(broken, _config())
    assert _leftovers(broken) == []  # a failed apply leaves nothing behind


class _Owner:
    def __init__(self, unet, scheduler, steps=50):
        self.unet, self.scheduler = unet, scheduler
        self.scheduler.set_timesteps(steps)


@pytest.mark.parametrize("d,tau,expected", [
    (4, 0.7, [4] * 9 + [3] * 9 + [2] * 17 + [1] * 15),
    (3, 0.7, [3] * 12 + [2] * 23 + [1] * 15),
    (4, 0.74, [4] * 10 + [3] * 9 + [2] * 18 + [1] * 13),
    (2.5, 0.7, [3] * 7 + [2] * 28 + [1] * 15),
])
def test_progressive_schedule_reproduces_the_paper(unet3d, d, tau, expected, tiny):
    owner = _Owner(unet3d, tiny.scheduler())
    apply_scalecrafter(owner, _config(dilation={"mid_block.*": d}, dilate_tau=tau, progressive=True))
    state = scalecrafter_state(owner)
    got = []
    for i, _ in enumerate(owner.scheduler.timesteps):
        state.begin_call(StepInfo(i, 50), (16, 16))
        got.append(state.actions.get("mid_block.resnets.0.conv1", (1.0, False))[0])
    assert got == expected
    remove_scalecrafter(owner)


def test_dispersion_runs_when_configured_and_keeps_no_weight_copies(unet3d):
    params_before = sum(p.numel() for p in unet3d.parameters())
    conv = unet3d.mid_block.resnets[0].conv1
    captured = {}
    hook = conv.register_forward_hook(lambda m, i, o: captured.update(x=i[0], y=o))
    apply_scalecrafter(unet3d, _config(dilation={"mid_block.*": 4}, disperse=["mid_block.*"], disperse_tau=0.7))
    _run(unet3d, _video(16, 16))
    from scalecrafter_video.ops.disperse import disperse_weight, dispersion_transform

    big = disperse_weight(conv.weight, dispersion_transform())
    ref = F.conv2d(captured["x"], big, conv.bias, 1, 4, 2)  # 5x5 kernel at half the dilation
    torch.testing.assert_close(captured["y"], ref, rtol=0, atol=1e-5)
    assert sum(p.numel() for p in unet3d.parameters()) == params_before
    assert not [b for b in unet3d.buffers() if b.shape[-2:] == (5, 5)]
    hook.remove()
    remove_scalecrafter(unet3d)


def test_noise_damped_cfg_formula_and_half_batch(unet3d):
    """eps = eps_u(damped pass) + w (eps_c - eps_u)(main pass), and the damped pass sees batch B."""
    main = {"down_blocks.1.*": 2, "mid_block.*": 3}
    damped = {"mid_block.*": 2}
    x = _video()
    sizes = []
    hook = unet3d.register_forward_pre_hook(lambda m, a, k: sizes.append(a[0].shape[0]), with_kwargs=True)
    apply_scalecrafter(unet3d, _config(dilation=main, ndcfg_dilation=damped, ndcfg_tau=0.7))
    out = _run(unet3d, x)
    assert sizes == [2, 1]
    remove_scalecrafter(unet3d)
    hook.remove()

    apply_scalecrafter(unet3d, _config(dilation=main))
    eps_u, eps_c = _run(unet3d, x).chunk(2)
    apply_scalecrafter(unet3d, _config(dilation=damped))
    eps_damped = _run(unet3d, x[:1], emb=EMB[:1])
    remove_scalecrafter(unet3d)
    w = 7.5
    torch.testing.assert_close(out[:1] + w * (out[1:] - out[:1]), eps_damped + w * (eps_c - eps_u),
                               rtol=1e-5, atol=1e-5)
    # Declared not a CFG batch: no damped pass.
    apply_scalecrafter(unet3d, _config(dilation=main, ndcfg_dilation=damped, ndcfg_tau=0.7))
    y = torch.randn_like(x)
    single = _run(unet3d, y, cfg=False)
    apply_scalecrafter(unet3d, _config(dilation=main))
    assert torch.equal(_run(unet3d, y, cfg=False), single)
    remove_scalecrafter(unet3d)


def test_attn_sf_changes_sdpa_outputs_and_matches_the_scaled_logits(tiny):
    from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

    unet = tiny.unet2d()
    attn = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    assert isinstance(attn.processor, AttnProcessor2_0)
    x = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        base = unet(x, 500, encoder_hidden_states=EMB[:1]).sample
        native = unet(torch.randn(1, 4, 8, 8), 500, encoder_hidden_states=EMB[:1]).sample
    cfg = ScaleCrafterConfig(method="attn-sf", train_size=(64, 64), vae_scale_factor=8)
    apply_scalecrafter(unet, cfg)
    captured = {}
    hook = attn.register_forward_hook(lambda m, i, o: captured.update(x=i[0], y=o))
    with torch.no_grad():
        scaled = unet(x, 500, encoder_hidden_states=EMB[:1]).sample
    assert not torch.allclose(scaled, base, atol=1e-4)
    # Reference: the classic processor with the scale itself multiplied by sqrt(log_{N/4} N).
    n = 16 * 16
    ref = Attention(query_dim=attn.query_dim, heads=attn.heads, dim_head=attn.inner_dim // attn.heads,
                    processor=AttnProcessor())
    ref.load_state_dict(attn.state_dict())
    ref.scale = attn.scale * (torch.log(torch.tensor(n, dtype=torch.float64)) /
                              torch.log(torch.tensor(n / 4, dtype=torch.float64))).sqrt().item()
    with torch.no_grad():
        torch.testing.assert_close(captured["y"], ref(captured["x"]), rtol=1e-4, atol=1e-5)
    hook.remove()
    with torch.no_grad():  # at the training size the factor is 1: outputs identical
        same = unet(torch.randn(1, 4, 8, 8), 500, encoder_hidden_states=EMB[:1]).sample
    assert same.shape == native.shape
    remove_scalecrafter(unet)
    temporal = tiny.unet3d()
    apply_scalecrafter(temporal, cfg)
    hooked = [n for n, m in temporal.named_modules() if m._forward_hooks and n]
    assert hooked and all("attn1.to_q" in n and "temp" not in n and "transformer_in" not in n for n in hooked)
    remove_scalecrafter(temporal)


def test_attn_sf_is_exact_identity_at_training_size(tiny):
    unet = tiny.unet2d()
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        before = unet(x, 500, encoder_hidden_states=EMB[:1]).sample
    apply_scalecrafter(unet, ScaleCrafterConfig(method="attn-sf", train_size=(64, 64), vae_scale_factor=8))
    with torch.no_grad():
        assert torch.equal(unet(x, 500, encoder_hidden_states=EMB[:1]).sample, before)


def test_works_under_accelerate_offload_hooks_in_either_order(tiny):
    from accelerate import cpu_offload_with_hook

    unet = tiny.unet3d()
    x = _video()
    cfg = _config(ndcfg_dilation={"mid_block.*": 2}, ndcfg_tau=0.7)
    apply_scalecrafter(unet, cfg)
    ref = _run(unet, x)
    remove_scalecrafter(unet)
    for order in ("apply-first", "offload-first"):
        u = tiny.unet3d()
        if order == "apply-first":
            apply_scalecrafter(u, cfg)
        _, hook = cpu_offload_with_hook(u, execution_device="cpu")
        if order == "offload-first":
            apply_scalecrafter(u, cfg)
        torch.testing.assert_close(_run(u, x), ref, rtol=0, atol=0)
        remove_scalecrafter(u)
        hook.remove()


def test_peft_lora_convs_are_dilated_with_their_base_layer(tiny):
    """A LoRA conv is base(x) + B(A(x)): dilating base and the 3x3 A alike equals dilating the merged
    kernel (B is 1x1, so it commutes with the spatial resizes and with dispersion)."""
    pytest.importorskip("peft")
    from peft import LoraConfig
    from peft.tuners.tuners_utils import BaseTunerLayer

    adapted, merged = tiny.unet2d(), tiny.unet2d()
    lora = LoraConfig(r=4, lora_alpha=4, target_modules=["conv1", "conv2"], init_lora_weights=False)
    adapted.add_adapter(lora)
    merged.add_adapter(lora)
    merged.load_state_dict(adapted.state_dict())
    for module in merged.modules():
        if isinstance(module, BaseTunerLayer):
            module.merge()
    cfg = _config(dilation={"down_blocks.1.*": 2.5, "mid_block.*": 4}, disperse=["mid_block.*"], disperse_tau=0.7)
    x = torch.randn(1, 4, 13, 11)
    outs = []
    for unet in (adapted, merged):
        apply_scalecrafter(unet, cfg)
        with torch.no_grad(), _step():
            outs.append(unet(x, 981, encoder_hidden_states=EMB[:1]).sample)
        remove_scalecrafter(unet)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    lora_a = adapted.mid_block.resnets[0].conv1.lora_A["default"]
    assert lora_a.kernel_size == (3, 3)
    keys = [s.key for s in spatial_convs(adapted)]
    assert keys.count("mid_block.resnets.0.conv1") == 2  # base_layer and lora_A act as one conv


# ------------------------------------------------------------------ per-axis factors through a whole UNet
def test_per_axis_factor_through_the_unet_and_progressive_per_axis(unet3d, tiny):
    conv = unet3d.down_blocks[1].resnets[0].conv1
    captured = {}
    hook = conv.register_forward_hook(lambda m, i, o: captured.update(x=i[0], y=o))
    apply_scalecrafter(unet3d, _config(dilation={"down_blocks.1.*": [1, 3]}))
    _run(unet3d, _video(16, 24))
    ref = F.conv2d(captured["x"], conv.weight, conv.bias, 1, (1, 3), (1, 3))
    torch.testing.assert_close(captured["y"], ref, rtol=0, atol=1e-5)
    hook.remove()
    owner = _Owner(unet3d, tiny.scheduler())
    apply_scalecrafter(owner, _config(dilation={"mid_block.*": [1, 4]}, progressive=True))
    state = scalecrafter_state(owner)
    got = []
    for i in range(50):
        state.begin_call(StepInfo(i, 50), (16, 16))
        got.append(state.actions.get("mid_block.resnets.0.conv1", (1.0, False))[0])
    assert got == [(1.0, 4.0)] * 9 + [(1.0, 3.0)] * 9 + [(1.0, 2.0)] * 17 + [1.0] * 15  # the width decays, height stays
    remove_scalecrafter(owner)


def test_dispersion_with_unequal_axes_is_refused(unet3d):
    with pytest.raises(ConfigError, match="per-axis"):
        apply_scalecrafter(unet3d, _config(dilation={"mid_block.*": [2, 4]}, disperse=["mid_block.*"], disperse_tau=0.5))
    assert _leftovers(unet3d) == []


def test_per_axis_schedule_round_trips_through_yaml(tmp_path):
    cfg = _config(dilation={"down_blocks.1.*": [1, 3], "mid_block.*": 2}, ndcfg_dilation={"mid_block.*": [1.5, 2]},
                  ndcfg_tau=0.5)
    path = tmp_path / "s.yaml"
    cfg.to_yaml(path)
    back = ScaleCrafterConfig.from_yaml(path)
    assert back.dilation == {"down_blocks.1.*": (1.0, 3.0), "mid_block.*": 2.0}
    assert back.ndcfg_dilation == {"mid_block.*": (1.5, 2.0)}
    with pytest.raises(ConfigError, match="height, width"):
        _config(dilation={"mid_block.*": [1, 2, 3]})
    with pytest.raises(ConfigError):
        _config(dilation={"mid_block.*": [0.5, 2]})


def test_damped_pass_reuses_the_down_blocks_both_tables_leave_alone(unet3d):
    """Down blocks on which the main and damped tables agree are computed once (in the main pass);
    the result equals recomputing them, and a block the tables treat differently runs twice."""
    x = _video()
    block0 = unet3d.down_blocks[0].resnets[0]
    block1 = unet3d.down_blocks[1].resnets[0]
    calls = {0: [], 1: []}
    hooks = [block0.register_forward_pre_hook(lambda m, a: calls[0].append(a[0].shape[0])),
             block1.register_forward_pre_hook(lambda m, a: calls[1].append(a[0].shape[0]))]
    try:
        cfg = _config(dilation={"down_blocks.1.*": 2, "mid_block.*": 3}, ndcfg_dilation={"mid_block.*": 2},
                      ndcfg_tau=0.7)
        apply_scalecrafter(unet3d, cfg)
        state = scalecrafter_state(unet3d)
        reused = _run(unet3d, x)
        frames = x.shape[2]
        assert calls[0] == [2 * frames] and calls[1] == [2 * frames, frames]  # block 0 not re-run
        assert state.reused == {} and state.reuse_blocks == 0  # nothing kept after the call
        state.down_blocks = 0  # switch the reuse off: every block runs in the damped pass
        calls[0].clear(), calls[1].clear()
        recomputed = _run(unet3d, x)
        assert calls[0] == [2 * frames, frames]
        torch.testing.assert_close(reused, recomputed, rtol=1e-5, atol=1e-5)
        # Tables that differ at the first level: nothing to reuse.
        apply_scalecrafter(unet3d, _config(dilation={"down_blocks.0.*": 2}, ndcfg_dilation={}, ndcfg_tau=0.7))
        calls[0].clear()
        _run(unet3d, x)
        assert calls[0] == [2 * frames, frames]
    finally:
        for h in hooks:
            h.remove()
        remove_scalecrafter(unet3d)
    assert not _leftovers(unet3d) and not any("forward" in b.__dict__ for b in unet3d.down_blocks)


def test_staged_schedule_switches_tables_at_the_stage_ends(unet3d):
    """Stages apply by step: 10 steps, stages ending at 0.3 and 0.6 -> steps 0-2, 3-5, then nothing;
    each stage's damped table too (the top-level one past the last stage)."""
    cfg = ScaleCrafterConfig.from_dict(dict(
        train_size=(16, 16), vae_scale_factor=1, ndcfg_tau=0.8, ndcfg_dilation={"mid_block.*": 1.5},
        stages=[{"until": 0.3, "dilation": {"mid_block.*": 3, "down_blocks.1.*": 2}},
                {"until": 0.6, "dilation": {"mid_block.*": [1, 2]}, "ndcfg_dilation": {"mid_block.*": 1.25}}]))
    apply_scalecrafter(unet3d, cfg)
    state = scalecrafter_state(unet3d)
    main, damped = [], []
    for i in range(10):
        state.begin_call(StepInfo(i, 10), (16, 16))
        main.append((state.actions.get("mid_block.resnets.0.conv1", (1.0,))[0],
                     state.actions.get("down_blocks.1.resnets.0.conv1", (1.0,))[0]))
        with state.damped_pass():
            damped.append(state.actions.get("mid_block.resnets.0.conv1", (1.0,))[0])
        state.end_call()
    assert main == [(3.0, 2.0)] * 3 + [((1.0, 2.0), 1.0)] * 3 + [(1.0, 1.0)] * 4
    assert damped == [1.5] * 3 + [1.25] * 3 + [1.5] * 2 + [1.0] * 2
    # through the UNet: stage 0 equals the same table applied alone, stage 1 likewise
    x = _video(16, 16, cfg_batch=False)
    with torch.no_grad(), denoising_step(1, 10, cfg=False):
        staged0 = unet3d(x, 981, encoder_hidden_states=EMB[:1]).sample
    with torch.no_grad(), denoising_step(4, 10, cfg=False):
        staged1 = unet3d(x, 981, encoder_hidden_states=EMB[:1]).sample
    apply_scalecrafter(unet3d, _config(dilation={"mid_block.*": 3, "down_blocks.1.*": 2}, dilate_tau=1.0))
    with torch.no_grad(), denoising_step(1, 10, cfg=False):
        assert torch.equal(unet3d(x, 981, encoder_hidden_states=EMB[:1]).sample, staged0)
    apply_scalecrafter(unet3d, _config(dilation={"mid_block.*": [1, 2]}, dilate_tau=1.0))
    with torch.no_grad(), denoising_step(4, 10, cfg=False):
        assert torch.equal(unet3d(x, 981, encoder_hidden_states=EMB[:1]).sample, staged1)
    assert not torch.equal(staged0, staged1)
    remove_scalecrafter(unet3d)


def test_a_stage_glob_that_matches_nothing_names_the_stage(unet3d):
    cfg = ScaleCrafterConfig.from_dict(dict(train_size=(16, 16), vae_scale_factor=1, stages=[
        {"until": 0.5, "dilation": {"mid_block.*": 2}}, {"until": 0.7, "dilation": {"middle.*": 2}}]))
    with pytest.raises(ConfigError, match=r"stages\[1\]\.dilation"):
        apply_scalecrafter(unet3d, cfg)
    assert not _leftovers(unet3d)
