"""ScaleCrafter through unmodified diffusers pipelines and through the project's own loop."""

import pytest
import torch

from scalecrafter_video import ScaleCrafterConfig, apply_scalecrafter, denoising_step, remove_scalecrafter
from scalecrafter_video.pipelines import TextToVideoPipeline


def _ndcfg_config():
    return ScaleCrafterConfig.from_dict(dict(
        train_size=(16, 16), vae_scale_factor=2, dilation={"down_blocks.1.*": 2, "mid_block.*": 3},
        dilate_tau=0.5, ndcfg_dilation={"mid_block.*": 2}, ndcfg_tau=0.5,
    ))


def test_ndcfg_end_to_end_through_stable_diffusion_pipeline(tiny):
    pipe = tiny.sd_pipeline()
    pipe.set_progress_bar_config(disable=True)
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    w, steps = 5.0, 2
    apply_scalecrafter(pipe, _ndcfg_config())
    out = pipe("a cat", negative_prompt="", num_inference_steps=steps, guidance_scale=w, latents=latents.clone(),
               output_type="latent", height=32, width=32).images
    remove_scalecrafter(pipe)

    # Independent reference: the paper's Eq. (7) at step 0 (t = 501 >= 500), plain CFG at step 1.
    cond, uncond = pipe.encode_prompt("a cat", "cpu", 1, True, "")
    sched = pipe.scheduler
    sched.set_timesteps(steps)
    main = _ndcfg_config().replace(ndcfg_tau=0.0, ndcfg_dilation={})
    damped = main.replace(dilation={"mid_block.*": 2})
    x = latents.clone() * sched.init_noise_sigma
    with torch.no_grad():
        for i, t in enumerate(sched.timesteps):
            apply_scalecrafter(pipe.unet, main)
            with denoising_step(i, steps, cfg=False):  # a bare UNet in our own loop: we say the step
                eps_u, eps_c = pipe.unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample.chunk(2)
            if i == 0:
                apply_scalecrafter(pipe.unet, damped)
                with denoising_step(i, steps, cfg=False):
                    base = pipe.unet(x, t, encoder_hidden_states=uncond).sample
            else:
                base = eps_u
            remove_scalecrafter(pipe.unet)
            x = sched.step(base + w * (eps_c - eps_u), t, x).prev_sample
    torch.testing.assert_close(out, x, rtol=1e-4, atol=1e-5)


@pytest.fixture(scope="module")
def t2v(tiny):
    return tiny.t2v_components()


def test_own_loop_matches_diffusers_text_to_video_pipeline(t2v):
    from diffusers import TextToVideoSDPipeline

    ref = TextToVideoSDPipeline(**t2v)
    ref.set_progress_bar_config(disable=True)
    ours = TextToVideoPipeline(t2v["unet"], t2v["scheduler"], t2v["text_encoder"], t2v["tokenizer"], t2v["vae"])
    cfg = ScaleCrafterConfig.auto((16, 16), (32, 32), num_levels=4, vae_scale_factor=2)
    for config in (None, cfg):
        results = []
        for pipe in (ref, ours):
            if config is not None:
                apply_scalecrafter(pipe, config)
            kw = dict(num_frames=3, height=32, width=32, num_inference_steps=3, guidance_scale=9.0,
                      generator=torch.Generator().manual_seed(3), output_type="latent")
            results.append(pipe("a dog", **kw) if pipe is ours else pipe("a dog", **kw).frames)
            remove_scalecrafter(pipe)
        torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-5)
    direct = ours("a dog", num_frames=3, height=32, width=32, num_inference_steps=3, progress=False,
                  generator=torch.Generator().manual_seed(3), output_type="latent")
    assert not torch.allclose(direct, results[1])


def test_own_loop_outputs_uint8_frames_and_resumes_from_latents(t2v):
    pipe = TextToVideoPipeline(t2v["unet"], t2v["scheduler"], t2v["text_encoder"], t2v["tokenizer"], t2v["vae"])
    video = pipe(["a", "b"], num_frames=2, height=16, width=24, num_inference_steps=2, progress=False,
                 generator=torch.Generator().manual_seed(0))
    assert video.shape == (2, 2, 16, 24, 3) and video.dtype.name == "uint8"
    start = torch.randn(1, 4, 2, 8, 12)
    a = pipe("a", num_frames=2, height=16, width=24, num_inference_steps=4, latents=start, start_step=2,
             output_type="latent", progress=False)
    assert a.shape == start.shape


def test_sdxl_pipeline_call_with_ndcfg_and_exact_removal(tiny):
    pipe = tiny.sdxl_pipeline()
    pipe.set_progress_bar_config(disable=True)
    kw = dict(prompt="a cat", negative_prompt="a dog", num_inference_steps=2, guidance_scale=5.0, height=32,
              width=32, output_type="latent")
    before = pipe(generator=torch.Generator().manual_seed(0), **kw).images
    cfg = ScaleCrafterConfig.from_dict(dict(
        train_size=(16, 16), vae_scale_factor=2, dilation={"down_blocks.2.*": 2, "mid_block.*": 2, "up_blocks.0.*": 2},
        dilate_tau=0.5, ndcfg_dilation={"mid_block.*": 2}, ndcfg_tau=0.5, attn_scale=True))
    sizes = []
    hook = pipe.unet.register_forward_pre_hook(lambda m, a, k: sizes.append(a[0].shape[0]), with_kwargs=True)
    apply_scalecrafter(pipe, cfg)
    during = pipe(generator=torch.Generator().manual_seed(0), **kw).images
    hook.remove()
    assert sizes == [2, 1, 2]  # step 0: main pass + damped unconditional half; step 1: main only
    assert not torch.allclose(during, before)
    remove_scalecrafter(pipe)
    assert torch.equal(pipe(generator=torch.Generator().manual_seed(0), **kw).images, before)
