"""LDMVideoPipeline on tiny random LVDM / VideoCrafter checkpoints written here: loading (strict),
sampling (seeded, one batched CFG call, research DDIM algebra), decoding, and the generate CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from scalecrafter_video import ScaleCrafterConfig
from scalecrafter_video.errors import ConfigError, ModelLoadError
from scalecrafter_video.models.ldm_pipeline import (
    DDIMSampler,
    LDMVideoPipeline,
    make_alphas_cumprod,
    make_scale_arr,
    read_model_config,
)


@pytest.fixture(scope="module")
def lvdm(lvdm_folder):
    return lvdm_folder


@pytest.fixture(scope="module")
def vc(videocrafter_folder):
    return videocrafter_folder


@pytest.fixture(scope="module")
def lvdm_pipe(lvdm):
    ckpt, cfg, clip = lvdm
    return LDMVideoPipeline.from_checkpoint(ckpt, cfg, clip_path=clip)


@pytest.fixture(scope="module")
def vc_pipe(vc):
    ckpt, cfg, tok = vc
    return LDMVideoPipeline.from_checkpoint(ckpt, cfg, clip_path=tok)


def run(pipe, seed=0, **kw):
    kw = {"num_frames": 4, "num_inference_steps": 4, "progress": False, **kw}
    return pipe("a cat", generator=torch.Generator().manual_seed(seed), **kw)


# ---------------------------------------------------------------------------------------------- loading
def test_attributes_follow_the_config(lvdm_pipe, vc_pipe):
    assert lvdm_pipe.family == "lvdm" and vc_pipe.family == "videocrafter"
    assert lvdm_pipe.train_size == (64, 64) and vc_pipe.train_size == (64, 128)
    assert lvdm_pipe.vae_scale_factor == vc_pipe.vae_scale_factor == 8
    assert lvdm_pipe.scheduler.config.num_train_timesteps == 1000
    assert lvdm_pipe.default_guidance_scale == 15.0 and vc_pipe.default_guidance_scale == 12.0
    assert lvdm_pipe.defaults["num_frames"] == 4 and lvdm_pipe.defaults["eta"] == 1.0
    assert lvdm_pipe.fps_condition is None and vc_pipe.fps_condition == 28
    assert vc_pipe.scheduler.scale_arr is not None and lvdm_pipe.scheduler.scale_arr is None


def test_real_configs_parse():
    root = Path(__file__).resolve().parent.parent / "configs"
    lv = read_model_config(root / "lvdm" / "t2v.yaml")
    assert (lv.family, lv.latent_size, lv.num_frames, lv.use_scale) == ("lvdm", (32, 32), 16, False)
    v2 = read_model_config(root / "videocrafter" / "inference_t2v_512_v2.0.yaml")
    assert (v2.family, v2.latent_size, v2.use_scale, v2.scale_b) == ("videocrafter", (40, 64), True, 0.7)
    v1k = read_model_config(root / "videocrafter" / "inference_t2v_1024_v1.0.yaml")
    assert v1k.latent_size == (72, 128) and v1k.fix_scale_bug and v1k.scale_b == 0.3


def _rewrite(ckpt: Path, dest: Path, edit) -> Path:
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    edit(state)
    torch.save({"state_dict": state}, dest)
    return dest


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("model.diffusion_model.input_blocks.1.1.proj_in.weight"), "missing key.*input_blocks.1.1.proj_in.weight"),
        (lambda s: s.__setitem__("model.diffusion_model.extra.weight", torch.zeros(1)), "unexpected key.*extra.weight"),
        (lambda s: s.__setitem__("model_ema.decay", torch.zeros(())), "unexpected key.*model_ema.decay"),
        (lambda s: s.__setitem__("first_stage_model.decoder.conv_out.bias", torch.zeros(5)), "shape mismatch.*conv_out.bias"),
        (lambda s: s.pop("first_stage_model.quant_conv.weight"), "missing key.*quant_conv.weight"),
        (lambda s: s.__setitem__("cond_stage_model.transformer.text_model.extra", torch.zeros(1)), "unexpected key"),
        (lambda s: s.__setitem__("alphas_cumprod", s["alphas_cumprod"] * 0.9), "alphas_cumprod"),
    ],
)
def test_strict_loading_names_the_offending_key(lvdm, tmp_path, edit, message):
    ckpt, cfg, clip = lvdm
    bad = _rewrite(ckpt, tmp_path / "bad.ckpt", edit)
    with pytest.raises(ModelLoadError, match=message):
        LDMVideoPipeline.from_checkpoint(bad, cfg, clip_path=clip)


def test_videocrafter_text_keys_are_strict(vc, tmp_path):
    ckpt, cfg, tok = vc
    bad = _rewrite(ckpt, tmp_path / "bad.ckpt", lambda s: s.pop("cond_stage_model.model.ln_final.weight"))
    with pytest.raises(ModelLoadError, match="cond_stage_model.model.*ln_final.weight"):
        LDMVideoPipeline.from_checkpoint(bad, cfg, clip_path=tok)


class Callback:
    """Stands for any pickled Python object a Lightning checkpoint may carry."""


def test_pickled_objects_are_refused(lvdm, tmp_path):
    ckpt, cfg, clip = lvdm
    state = torch.load(ckpt, weights_only=True)
    state["callback"] = Callback()  # an arbitrary class instance: loading it would run pickled code
    torch.save(state, tmp_path / "pickled.ckpt")
    with pytest.raises(ModelLoadError, match="weights_only=True"):
        LDMVideoPipeline.from_checkpoint(tmp_path / "pickled.ckpt", cfg, clip_path=clip)


def test_missing_files_and_parts_are_clear_errors(lvdm, vc, tmp_path, ldm):
    ckpt, cfg, clip = lvdm
    with pytest.raises(ModelLoadError, match="checkpoint not found"):
        LDMVideoPipeline.from_checkpoint(tmp_path / "nope.ckpt", cfg, clip_path=clip)
    with pytest.raises(ModelLoadError, match="model config not found"):
        LDMVideoPipeline.from_checkpoint(ckpt, tmp_path / "nope.yaml", clip_path=clip)
    with pytest.raises(ModelLoadError, match="--clip"):
        LDMVideoPipeline.from_checkpoint(ckpt, cfg)
    with pytest.raises(ModelLoadError, match="CLIP folder not found"):
        LDMVideoPipeline.from_checkpoint(ckpt, cfg, clip_path=tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="--clip"):
        LDMVideoPipeline.from_checkpoint(vc[0], vc[1])
    other = OmegaConf.to_container(OmegaConf.load(cfg))
    other["model"]["params"]["unet_config"]["target"] = "ldm.modules.diffusionmodules.openaimodel.UNetModel"
    with pytest.raises(ModelLoadError, match="unsupported UNet target"):
        LDMVideoPipeline.from_checkpoint(ckpt, ldm.write_config(other, tmp_path / "sd.yaml"), clip_path=clip)
    other["model"]["target"] = "lvdm.models.ddpm3d.LatentVisualDiffusion"
    with pytest.raises(ModelLoadError, match="image-to-video"):
        LDMVideoPipeline.from_checkpoint(ckpt, ldm.write_config(other, tmp_path / "i2v.yaml"), clip_path=clip)
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ModelLoadError, match="malformed YAML"):
        LDMVideoPipeline.from_checkpoint(ckpt, tmp_path / "broken.yaml", clip_path=clip)


def test_config_and_checkpoint_must_agree(lvdm, tmp_path, ldm):
    ckpt, cfg, clip = lvdm
    wider = OmegaConf.to_container(OmegaConf.load(cfg))
    wider["model"]["params"]["unet_config"]["params"]["model_channels"] = 64
    with pytest.raises(ModelLoadError, match="shape mismatch"):
        LDMVideoPipeline.from_checkpoint(ckpt, ldm.write_config(wider, tmp_path / "wide.yaml"), clip_path=clip)


def test_lvdm_text_weights_in_the_checkpoint_win(lvdm, tmp_path):
    ckpt, cfg, clip = lvdm
    key = "cond_stage_model.transformer.text_model.final_layer_norm.bias"
    changed = _rewrite(ckpt, tmp_path / "text.ckpt", lambda s: s[key].fill_(0.25))
    pipe = LDMVideoPipeline.from_checkpoint(changed, cfg, clip_path=clip)
    bias = dict(pipe.text_encoder.transformer.named_parameters())
    name = next(n for n in bias if n.endswith("final_layer_norm.bias"))
    assert torch.all(bias[name] == 0.25)


def test_diffusers_style_folders_are_accepted(lvdm, vc, tmp_path):
    """--clip may point at a model folder with tokenizer/ and text_encoder/ subfolders."""
    import shutil

    ckpt, cfg, clip = lvdm
    root = tmp_path / "sd"
    shutil.copytree(clip, root / "tokenizer")
    shutil.copytree(clip, root / "text_encoder")
    pipe = LDMVideoPipeline.from_checkpoint(ckpt, cfg, clip_path=root)
    assert pipe.encode_prompt(["a"]).shape == (1, 77, 32)
    ckpt, cfg, tok = vc
    shutil.copytree(tok, tmp_path / "sd2" / "tokenizer")
    pipe = LDMVideoPipeline.from_checkpoint(ckpt, cfg, clip_path=tmp_path / "sd2")
    assert pipe.encode_prompt(["a"]).shape == (1, 77, 64)


# ---------------------------------------------------------------------------------------------- sampling
def test_lvdm_sampling_is_seeded(lvdm_pipe):
    a, b, c = run(lvdm_pipe, 0), run(lvdm_pipe, 0), run(lvdm_pipe, 1)
    assert a.shape == (1, 4, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert lvdm_pipe.scheduler.timesteps.tolist() == [751, 501, 251, 1]


def test_videocrafter_batch_and_fps_conditioning(vc_pipe):
    seen = []
    handle = vc_pipe.unet.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["fps"].clone()), with_kwargs=True)
    try:
        out = vc_pipe(["a cat", "a dog"], num_frames=4, num_inference_steps=4, progress=False,
                      generator=torch.Generator().manual_seed(0), fps=12)
    finally:
        handle.remove()
    assert out.shape == (2, 4, 64, 128, 3)
    assert len(seen) == 4 and all(f.tolist() == [12] * 4 for f in seen)


def test_cfg_is_one_batched_call_with_uncond_first(lvdm_pipe):
    calls = []
    hook = lvdm_pipe.unet.register_forward_pre_hook(lambda m, a, kw: calls.append((a, kw)), with_kwargs=True)
    try:
        run(lvdm_pipe, negative_prompt="blurry", output_type="latent")
        run(lvdm_pipe, guidance_scale=1.0, output_type="latent")
    finally:
        hook.remove()
    (x, t), kw = calls[0]
    assert x.shape[0] == 2 and torch.equal(x[0], x[1]) and t.tolist() == [751, 751]
    ctx = kw["context"]
    assert torch.allclose(ctx[0], lvdm_pipe.encode_prompt(["blurry"])[0])
    assert torch.allclose(ctx[1], lvdm_pipe.encode_prompt(["a cat"])[0])
    assert len(calls) == 8 and calls[4][0][0].shape[0] == 1  # guidance 1: a single conditional pass


def test_guidance_combines_the_halves(lvdm_pipe):
    """eps = u + w (c - u): with a stub UNet returning the context mean, the sampler sees the blend."""
    sampler_eps = []
    original_step = lvdm_pipe.scheduler.step

    def spy(eps, i, x, generator=None):
        sampler_eps.append(eps.clone())
        return original_step(eps, i, x, generator)

    unet_out = []
    hook = lvdm_pipe.unet.register_forward_hook(lambda m, a, kw, out: unet_out.append(out.clone()), with_kwargs=True)
    lvdm_pipe.scheduler.step = spy
    try:
        run(lvdm_pipe, guidance_scale=7.0, num_inference_steps=2, output_type="latent")
    finally:
        del lvdm_pipe.scheduler.step
        hook.remove()
    u, c = unet_out[0].chunk(2)
    assert torch.allclose(sampler_eps[0], u + 7.0 * (c - u), atol=1e-6)


def test_ddim_step_algebra():
    spec = read_model_config(Path(__file__).resolve().parent.parent / "configs/videocrafter/inference_t2v_512_v2.0.yaml")
    ac = make_alphas_cumprod(spec)
    plain, scaled = DDIMSampler(ac), DDIMSampler(ac, make_scale_arr(spec))
    for s in (plain, scaled):
        s.set_timesteps(50, eta=0.0)
    assert plain.timesteps[0] == 981 and plain.timesteps[-1] == 1 and len(plain.timesteps) == 50
    x = torch.randn(1, 4, 2, 3, 3)
    eps = torch.zeros_like(x)
    i = 10
    t, t_prev = plain.timesteps[i].item(), plain.timesteps[i + 1].item()
    a_t, a_prev = ac[t].float(), ac[t_prev].float()
    x_prev = plain.step(eps, t, x).prev_sample  # the diffusers scheduler protocol: step(eps, t, x)
    assert torch.allclose(x_prev, x * (a_prev / a_t).sqrt(), atol=1e-6)
    s = make_scale_arr(spec)
    out = scaled.step(eps, t, x)
    x_prev, x0 = out.prev_sample, out.pred_original_sample
    assert torch.allclose(x0, x / a_t.sqrt() / s[t], atol=1e-6)
    assert torch.allclose(x_prev, a_prev.sqrt() * s[t_prev] * x0, atol=1e-6)
    assert s[0] == 1.0 and abs(s[399].item() - 0.7) < 1e-6 and abs(s[999].item() - 0.7) < 1e-6
    plain.set_timesteps(50, eta=1.0)  # eta 1: DDPM posterior variance
    idx = 50 - 1 - i
    expected = ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
    assert torch.allclose(plain._sigma[idx], expected, atol=1e-6)


def test_bad_call_arguments_are_clear_errors(lvdm_pipe):
    with pytest.raises(ConfigError, match="multiple of 16"):
        run(lvdm_pipe, height=72)
    with pytest.raises(ConfigError, match="num_inference_steps=3"):
        run(lvdm_pipe, num_inference_steps=3)
    with pytest.raises(ConfigError, match="num_frames"):
        run(lvdm_pipe, num_frames=0)
    with pytest.raises(ConfigError, match="prompt"):
        lvdm_pipe([], progress=False)


def test_chunked_decoding_matches_and_family_defaults_apply(lvdm_pipe):
    latents = run(lvdm_pipe, output_type="latent", num_frames=None, num_inference_steps=None, eta=None)
    assert latents.shape == (1, 4, 4, 8, 8)  # defaults: the config's 4 frames at 64x64
    lvdm_pipe.decode_chunk_size = 4
    try:
        together = lvdm_pipe.decode_latents(latents, progress=False)
    finally:
        lvdm_pipe.decode_chunk_size = 1
    one_by_one = lvdm_pipe.decode_latents(latents, progress=False)
    assert np.abs(together.astype(int) - one_by_one.astype(int)).max() <= 1


# ---------------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize("family", ["lvdm", "vc"])
def test_generate_cli_end_to_end(family, lvdm, vc, tmp_path):
    from scalecrafter_video.cli import main

    ckpt, cfg, clip = lvdm if family == "lvdm" else vc
    out = tmp_path / "frames"
    code = main([
        "generate", "--model", str(ckpt), "--model-config", str(cfg), "--clip", str(clip), "--prompt", "a cat",
        "--height", "128", "--width", "128" if family == "lvdm" else "256", "--frames", "2", "--steps", "2",
        "--seed", "3", "--out", str(out), "--compare", "--device", "cpu",
    ])
    assert code == 0
    frames = sorted(out.glob("*.png"))
    assert len(frames) == 2
    assert (tmp_path / "frames.json").is_file()  # the sidecar with seed and resolved schedule


def test_unsupported_decode_options_are_refused_not_ignored(lvdm_pipe):
    with pytest.raises(ConfigError, match="--tile-size"):
        run(lvdm_pipe, tile_size=8)
    from scalecrafter_video.recipes import sample_video as render
    from scalecrafter_video.errors import ScaleCrafterError

    cfg = ScaleCrafterConfig.auto(lvdm_pipe.train_size, lvdm_pipe.train_size, num_levels=2)
    with pytest.raises(ScaleCrafterError, match="--lr-guidance"):
        render(lvdm_pipe, cfg, "a cat", 0, lr_guidance=0.5, height=64, width=64)


def test_latents_and_start_step_resume_the_same_trajectory(lvdm_pipe):
    """The LDM models run the project's one sampling loop: resuming from step k of a trajectory's own
    intermediate latents gives that trajectory's result."""
    import torch

    kept = {}
    full = run(lvdm_pipe, output_type="latent", eta=0.0,
               callback=lambda i, t, x: kept.setdefault(i, x.clone()))
    resumed = run(lvdm_pipe, output_type="latent", eta=0.0, latents=kept[0], start_step=1)
    torch.testing.assert_close(resumed, full, rtol=1e-5, atol=1e-5)
