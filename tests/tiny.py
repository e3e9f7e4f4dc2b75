"""Tiny models built in code (seeded, random weights) for tests: no hub, no network."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def tiny_unet3d(seed: int = 0, sample_size: int = 8, channels=(16, 16, 32, 32), cross_dim: int = 32):
    from diffusers import UNet3DConditionModel

    torch.manual_seed(seed)
    unet = UNet3DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=channels,
        layers_per_block=2, norm_num_groups=8, cross_attention_dim=cross_dim, attention_head_dim=4,
    )
    _randomize_zero_inits(unet)
    return unet.eval()


def tiny_unet2d(seed: int = 0, sample_size: int = 8, channels=(16, 16, 32, 32), cross_dim: int = 32, **kw):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    blocks = len(channels)
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=channels,
        layers_per_block=2, norm_num_groups=8, cross_attention_dim=cross_dim, attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D",) * (blocks - 1) + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (blocks - 1), **kw,
    )
    _randomize_zero_inits(unet)
    return unet.eval()


def _randomize_zero_inits(model) -> None:
    """diffusers zero-initialises output convs (e.g. TemporalConvLayer.conv4): give them weights so
    that every layer influences the output and the tests can see a change."""
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim > 1 and torch.count_nonzero(p) == 0:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def tiny_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in chars:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16,
                        unk_token="<|endoftext|>", pad_token="<|endoftext|>")
    return tok


def tiny_text_encoder(seed: int = 0, dim: int = 32, vocab_size: int = 80):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    cfg = CLIPTextConfig(vocab_size=vocab_size, hidden_size=dim, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1)
    return CLIPTextModel(cfg).eval()


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8, layers_per_block=1, sample_size=16,
    ).eval()


def tiny_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                         clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def tiny_t2v_components(tmp: Path, seed: int = 0):
    tok = tiny_tokenizer(tmp / "_tok")
    return dict(unet=tiny_unet3d(seed, sample_size=8), vae=tiny_vae(seed), text_encoder=tiny_text_encoder(seed),
                tokenizer=tok, scheduler=tiny_scheduler())


def tiny_t2v_folder(folder: Path, seed: int = 0) -> Path:
    """A TextToVideoSDPipeline folder (native 16x16 pixels: latent 8x8 with a 2x VAE)."""
    from diffusers import TextToVideoSDPipeline

    pipe = TextToVideoSDPipeline(**tiny_t2v_components(folder.parent / f"_{folder.name}_parts", seed))
    pipe.save_pretrained(folder)
    (folder / "scalecrafter_video.json").write_text(json.dumps({"num_frames": 3, "num_inference_steps": 4}))
    return folder


def tiny_sd_pipeline(tmp: Path, seed: int = 0):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=tiny_vae(seed), text_encoder=tiny_text_encoder(seed), tokenizer=tiny_tokenizer(tmp / "_sd_tok"),
        unet=tiny_unet2d(seed), scheduler=tiny_scheduler(), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
