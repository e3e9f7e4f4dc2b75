"""The diffusers video families end to end through their own ``__call__``: AnimateDiff, AnimateDiff-SDXL,
Stable Video Diffusion and I2VGen-XL (tiny random-weight pipelines built in code)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from scalecrafter_video import ConfigError, ScaleCrafterConfig, apply_scalecrafter, remove_scalecrafter
from scalecrafter_video.engine import scalecrafter_state, spatial_self_attentions, unet_levels
from scalecrafter_video.engine.layers import is_temporal_path
from scalecrafter_video.engine.position import active_steps
from scalecrafter_video.pipelines import FAMILIES, DiffusersVideoPipeline, TextToVideoPipeline

BUILDERS = {
    "animatediff": ("animatediff_pipeline", "AnimateDiffPipeline"),
    "animatediff-sdxl": ("animatediff_sdxl_pipeline", "AnimateDiffSDXLPipeline"),
    "svd": ("svd_pipeline", "StableVideoDiffusionPipeline"),
    "i2vgen-xl": ("i2vgenxl_pipeline", "I2VGenXLPipeline"),
}
STEPS, FRAMES, SIZE = 4, 2, 32  # 2x the tiny models' native 16x16


@pytest.fixture(scope="module", params=list(BUILDERS))
def family_pipe(request, tiny):
    build, cls = BUILDERS[request.param]
    pipe = getattr(tiny, build)()
    return DiffusersVideoPipeline(pipe, FAMILIES[cls], {"train_size": [16, 16]})


def _config(pipe, **kw):
    cfg = ScaleCrafterConfig.auto(pipe.train_size, (SIZE, SIZE), num_levels=unet_levels(pipe.unet), vae_scale_factor=2)
    return cfg.replace(dilate_tau=0.5, **kw)


def _run(tiny, pipe, seed=0, **kw):
    image = tiny.image((SIZE, SIZE), seed=1) if pipe.needs_image else None
    return pipe("a cat", height=SIZE, width=SIZE, num_frames=FRAMES, num_inference_steps=STEPS, guidance_scale=3.0,
                generator=torch.Generator().manual_seed(seed), progress=False, image=image, **kw)


def _leftovers(unet):
    patched = [n for n, m in unet.named_modules() if "_conv_forward" in m.__dict__ or "_scalecrafter_padding" in m.__dict__]
    hooks = [n for n, m in unet.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    return patched + hooks + (["_scalecrafter"] if "_scalecrafter" in unet.__dict__ else [])


def test_acts_at_2x_with_tau_steps_and_removal_is_exact(family_pipe, tiny):
    pipe = family_pipe
    plain = _run(tiny, pipe)
    assert plain.shape == (1, FRAMES, SIZE, SIZE, 3)
    apply_scalecrafter(pipe, _config(pipe).replace(method="direct"))
    assert np.array_equal(_run(tiny, pipe), plain)  # Direct-Inf is the unpatched pipeline, bit for bit
    integer = _config(pipe)
    fractional = _config(pipe, dilation={k: v + 0.5 for k, v in integer.dilation.items()}, progressive=True)
    dispersed = _config(pipe, disperse=["mid_block.*"], disperse_tau=0.5)
    for cfg in (integer, fractional, dispersed):
        apply_scalecrafter(pipe, cfg)
        out = _run(tiny, pipe)
        stats = scalecrafter_state(pipe).stats
        assert stats.dilated_steps == list(range(active_steps(0.5, STEPS))) == [0, 1]
        assert stats.dispersed_calls == (2 if cfg is dispersed else 0)
        assert np.abs(out.astype(int) - plain).max() > 0  # the method acted
    remove_scalecrafter(pipe)
    assert _leftovers(pipe.unet) == []
    assert np.array_equal(_run(tiny, pipe), plain)


def test_ndcfg_runs_on_the_uncond_half_and_changes_the_output(family_pipe, tiny):
    pipe = family_pipe
    apply_scalecrafter(pipe, _config(pipe))
    without = _run(tiny, pipe)
    batches = []
    hook = pipe.unet.register_forward_pre_hook(
        lambda m, a, kw: batches.append((a[0] if a else kw["sample"]).shape[0]), with_kwargs=True)
    apply_scalecrafter(pipe, _config(pipe, ndcfg_tau=0.5))
    try:
        with_ndcfg = _run(tiny, pipe)
    finally:
        hook.remove()
    stats = scalecrafter_state(pipe).stats
    remove_scalecrafter(pipe)
    assert stats.damped_steps == [0, 1]
    assert batches[:4] == [2, 1, 2, 1] and batches[4:] == [2, 2]  # damped pass: batch B, first half of 2B
    assert np.abs(with_ndcfg.astype(int) - without).max() > 0


def _temporal_roots(unet):
    """The outermost frame-mixing modules that are called (containers such as ModuleList are not)."""
    modules = dict(unet.named_modules())
    containers = (torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.Sequential)

    def called_temporal(name):
        return is_temporal_path(name) and not isinstance(modules[name], containers)

    roots = {}
    for name, module in modules.items():
        if not name or not called_temporal(name):
            continue
        parts = name.split(".")
        if any(called_temporal(".".join(parts[:i])) for i in range(1, len(parts))):
            continue
        roots[name] = module
    return roots


def test_temporal_modules_are_bitwise_untouched(family_pipe, tiny):
    """Every frame-mixing module computes, with the method on (dilation + ndcfg + Attn-SF), exactly what
    the original module computes on the same inputs."""
    pipe = family_pipe
    roots = _temporal_roots(pipe.unet)
    assert roots, "each video family has temporal layers"
    seen = {}

    def record(name):
        def hook(module, args, kwargs, output):
            seen.setdefault(name, (args, kwargs, output))
        return hook

    handles = [m.register_forward_hook(record(n), with_kwargs=True) for n, m in roots.items()]
    apply_scalecrafter(pipe, _config(pipe, ndcfg_tau=0.5, attn_scale=True))
    for name, module in roots.items():
        assert not any("_conv_forward" in m.__dict__ for m in module.modules()), name
        assert not any(m._forward_hooks for m in module.modules() if m is not module), name
    try:
        _run(tiny, pipe)
    finally:
        for h in handles:
            h.remove()
        remove_scalecrafter(pipe)
    assert set(seen) == set(roots)
    with torch.no_grad():
        for name, (args, kwargs, output) in seen.items():
            again = roots[name](*args, **kwargs)
            first = output[0] if isinstance(output, tuple) else getattr(output, "sample", output)
            again = again[0] if isinstance(again, tuple) else getattr(again, "sample", again)
            assert torch.equal(first, again), name


def test_attn_sf_scales_only_spatial_self_attention(family_pipe, tiny):
    pipe = family_pipe
    hooked_names = {n for n, _ in spatial_self_attentions(pipe.unet)}
    assert hooked_names and not any(is_temporal_path(n) for n in hooked_names)
    assert not any(n.startswith(("image_latents", "transformer_in")) for n in hooked_names)
    apply_scalecrafter(pipe, ScaleCrafterConfig(method="attn-sf", train_size=(16, 16), vae_scale_factor=2))
    hooked = {n for n, m in pipe.unet.named_modules() if m._forward_hooks and n.endswith("to_q")}
    plain_state = scalecrafter_state(pipe)
    out = _run(tiny, pipe)
    remove_scalecrafter(pipe)
    assert hooked == {f"{n}.to_q" for n in hooked_names}
    assert plain_state.acted and out.shape == (1, FRAMES, SIZE, SIZE, 3)


def test_works_after_model_cpu_offload(tiny):
    pipe = DiffusersVideoPipeline(tiny.animatediff_pipeline(), FAMILIES["AnimateDiffPipeline"],
                                  {"train_size": [16, 16]})
    apply_scalecrafter(pipe, _config(pipe, ndcfg_tau=0.5))
    ref = _run(tiny, pipe)
    remove_scalecrafter(pipe)
    pipe.pipe.enable_model_cpu_offload(device="cpu")
    apply_scalecrafter(pipe, _config(pipe, ndcfg_tau=0.5))
    assert np.array_equal(_run(tiny, pipe), ref)
    assert scalecrafter_state(pipe).stats.damped_steps == [0, 1]
    remove_scalecrafter(pipe)


def test_svd_options_and_image_rules(tiny):
    pipe = DiffusersVideoPipeline(tiny.svd_pipeline(), FAMILIES["StableVideoDiffusionPipeline"],
                                  {"train_size": [16, 16]})
    a = _run(tiny, pipe)
    b = _run(tiny, pipe, motion_bucket_id=30, noise_aug_strength=0.1)
    assert np.abs(a.astype(int) - b).max() > 0
    with pytest.raises(Exception, match="input image"):
        pipe("x", height=16, width=16, num_frames=2, num_inference_steps=2, progress=False)
    with pytest.raises(Exception, match="does not take"):
        _run(tiny, pipe, bogus=1)
    tiled = _run(tiny, pipe, tile_size=12)
    assert tiled.shape == a.shape and np.abs(tiled.astype(int) - a).mean() < 40


# ------------------------------------------------------------------ tau on every scheduler kind
SCHEDULERS = ["DDIMScheduler", "DDPMScheduler", "PNDMScheduler", "EulerDiscreteScheduler",
              "EulerAncestralDiscreteScheduler", "DPMSolverMultistepScheduler", "LCMScheduler"]


@pytest.mark.parametrize("name", SCHEDULERS)
def test_tau_means_the_same_step_count_on_every_scheduler(name, tiny):
    import diffusers

    sd = tiny.sd_pipeline()
    sd.scheduler = getattr(diffusers, name).from_config(sd.scheduler.config)
    sd.set_progress_bar_config(disable=True)
    steps = 10
    cfg = ScaleCrafterConfig.auto((16, 16), (32, 32), num_levels=4, vae_scale_factor=2).replace(
        dilate_tau=0.3, ndcfg_tau=0.6)
    apply_scalecrafter(sd, cfg)
    sd("a cat", height=32, width=32, num_inference_steps=steps, guidance_scale=3.0, output_type="latent",
       generator=torch.Generator().manual_seed(0))
    stats = scalecrafter_state(sd).stats
    remove_scalecrafter(sd)
    n = len(sd.scheduler.timesteps)  # PNDM's PLMS warm-up adds one model evaluation
    assert stats.steps_seen == list(range(n))
    assert stats.dilated_steps == list(range(active_steps(0.3, n)))
    assert stats.damped_steps == list(range(active_steps(0.6, n)))


def test_tau_on_svd_edm_schedule(tiny):
    pipe = DiffusersVideoPipeline(tiny.svd_pipeline(), FAMILIES["StableVideoDiffusionPipeline"],
                                  {"train_size": [16, 16]})
    apply_scalecrafter(pipe, _config(pipe).replace(dilate_tau=0.7))
    image = tiny.image((32, 32))
    pipe(image=image, height=32, width=32, num_frames=2, num_inference_steps=10, progress=False,
         generator=torch.Generator().manual_seed(0))
    stats = scalecrafter_state(pipe).stats
    remove_scalecrafter(pipe)
    assert stats.steps_seen == list(range(10)) and stats.dilated_steps == list(range(7))


# ------------------------------------------------------------------ no silent no-op
def test_warns_when_a_schedule_never_acts(tiny):
    parts = tiny.t2v_components()
    pipe = TextToVideoPipeline(parts["unet"], parts["scheduler"], parts["text_encoder"], parts["tokenizer"], parts["vae"])
    cfg = ScaleCrafterConfig.auto((16, 16), (32, 32), num_levels=4, vae_scale_factor=2).replace(dilate_tau=0.25)
    apply_scalecrafter(pipe, cfg)
    latents = torch.randn(1, 4, 2, 16, 16)
    with pytest.warns(RuntimeWarning, match=r"dilate_tau=0.25 covers steps 0..0 of 4 but sampling ran steps 2..3"):
        pipe("a cat", height=32, width=32, num_frames=2, num_inference_steps=4, latents=latents, start_step=2,
             progress=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="ScaleCrafter did not act")  # once only, and not when it acts
        pipe("a cat", height=32, width=32, num_frames=2, num_inference_steps=4, progress=False)
    remove_scalecrafter(pipe)


def test_bare_unet_without_a_declared_step_is_a_clear_error(tiny):
    parts = tiny.t2v_components()
    unet = parts["unet"]
    apply_scalecrafter(unet, ScaleCrafterConfig.auto((16, 16), (32, 32), num_levels=4, vae_scale_factor=2))
    with pytest.raises(ConfigError, match="denoising_step"), torch.no_grad():
        unet(torch.randn(1, 4, 2, 16, 16), 500, encoder_hidden_states=torch.randn(1, 5, 32))
    remove_scalecrafter(unet)


def test_failed_apply_keeps_the_previous_installation(tiny):
    sd = tiny.sd_pipeline()
    good = ScaleCrafterConfig.auto((16, 16), (32, 32), num_levels=4, vae_scale_factor=2)
    apply_scalecrafter(sd, good)
    with pytest.raises(ConfigError, match="down_blocks.9"):
        apply_scalecrafter(sd, good.replace(dilation={"down_blocks.9.*": 2}))
    assert scalecrafter_state(sd).config == good
    assert any("_conv_forward" in m.__dict__ for m in sd.unet.modules())
    remove_scalecrafter(sd)
    with pytest.raises(TypeError, match="UNet"):
        apply_scalecrafter(torch.nn.Linear(2, 2), good)


def test_every_pipeline_offers_the_one_protocol(tiny):
    from scalecrafter_video.pipelines import ImagePipeline, VideoPipeline

    parts = tiny.t2v_components()
    ours = TextToVideoPipeline(parts["unet"], parts["scheduler"], parts["text_encoder"], parts["tokenizer"], parts["vae"])
    wrapped = DiffusersVideoPipeline(tiny.animatediff_pipeline(), FAMILIES["AnimateDiffPipeline"])
    image = ImagePipeline(tiny.sd_pipeline())
    for pipe in (ours, wrapped, image):
        assert isinstance(pipe, VideoPipeline)
    assert ours.supports_lr_guidance and not getattr(wrapped, "supports_lr_guidance", False)
    with pytest.raises(Exception, match="tile-size"):
        image("x", height=16, width=16, num_inference_steps=1, tile_size=8, progress=False)
