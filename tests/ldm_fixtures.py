"""Tiny LVDM / VideoCrafter model folders for tests: YAML configs in the original layout,
random-weight ``.ckpt`` files with the original key prefixes, tiny CLIP tokenizer / text model."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

TEXT_WIDTH_LVDM = 32
TEXT_WIDTH_VC = 64  # OpenCLIP rule: heads = width / 64 -> 1 head


def _bytes_to_unicode() -> list[str]:
    """The 256 printable stand-ins CLIP's byte-level BPE uses for raw bytes."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def write_tokenizer(folder: Path) -> int:
    """A character-level CLIP BPE tokenizer (no merges). Returns the vocabulary size (514)."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return len(vocab)


def write_clip_folder(folder: Path, seed: int = 0) -> Path:
    """Tokenizer + a 2-layer, width-32 ``CLIPTextModel`` saved with ``save_pretrained``."""
    from transformers import CLIPTextConfig, CLIPTextModel

    n = write_tokenizer(folder)
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=n, hidden_size=TEXT_WIDTH_LVDM, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=n - 2, eos_token_id=n - 1, pad_token_id=n - 1,
    )
    CLIPTextModel(config).save_pretrained(folder)
    return folder


VAE_PARAMS = {
    "embed_dim": 4,
    "monitor": "val/rec_loss",
    "ddconfig": {
        "double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
        "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
    },
    "lossconfig": {"target": "torch.nn.Identity"},
}


def lvdm_config(**unet_overrides) -> dict:
    """text2video.yaml's layout with tiny sizes."""
    unet = {
        "image_size": 8, "in_channels": 4, "out_channels": 4, "model_channels": 32,
        "attention_resolutions": [2, 1], "num_res_blocks": 1, "channel_mult": [1, 2], "num_heads": 2,
        "transformer_depth": 1, "context_dim": TEXT_WIDTH_LVDM, "use_checkpoint": True, "legacy": False,
        "kernel_size_t": 1, "padding_t": 0, "use_temporal_transformer": True, "temporal_length": 4,
        "use_relative_position": True, **unet_overrides,
    }
    return {
        "model": {
            "target": "lvdm.models.ddpm3d.LatentDiffusion",
            "params": {
                "linear_start": 0.00085, "linear_end": 0.012, "num_timesteps_cond": 1, "log_every_t": 200,
                "timesteps": 1000, "first_stage_key": "video", "cond_stage_key": "caption", "image_size": [8, 8],
                "video_length": 4, "channels": 4, "cond_stage_trainable": False, "conditioning_key": "crossattn",
                "scale_by_std": False, "scale_factor": 0.18215, "use_ema": False,
                "unet_config": {"target": "lvdm.models.modules.openaimodel3d.UNetModel", "params": unet},
                "first_stage_config": {"target": "lvdm.models.autoencoder.AutoencoderKL", "params": VAE_PARAMS},
                "cond_stage_config": {"target": "lvdm.models.modules.condition_modules.FrozenCLIPEmbedder"},
            },
        }
    }


def videocrafter_config(v2: bool = True, **unet_overrides) -> dict:
    """inference_t2v_512_v2.0.yaml's layout (``v2=False``: the v1.0 512 settings) with tiny sizes."""
    unet = {
        "in_channels": 4, "out_channels": 4, "model_channels": 32, "attention_resolutions": [2, 1],
        "num_res_blocks": 1, "channel_mult": [1, 2], "num_head_channels": 16, "transformer_depth": 1,
        "context_dim": TEXT_WIDTH_VC, "use_linear": True, "use_checkpoint": True, "temporal_conv": v2,
        "temporal_attention": True, "temporal_selfatt_only": True, "use_relative_position": not v2,
        "use_causal_attention": False, "temporal_length": 4, "addition_attention": True, "fps_cond": v2,
        **unet_overrides,
    }
    params = {
        "linear_start": 0.00085, "linear_end": 0.012, "num_timesteps_cond": 1, "timesteps": 1000,
        "first_stage_key": "video", "cond_stage_key": "caption", "cond_stage_trainable": False,
        "conditioning_key": "crossattn", "image_size": [8, 16], "channels": 4, "scale_by_std": False,
        "scale_factor": 0.18215, "use_ema": False, "uncond_type": "empty_seq",
    }
    if v2:
        params.update(use_scale=True, scale_b=0.7)
    params.update(
        unet_config={"target": "lvdm.modules.networks.openaimodel3d.UNetModel", "params": unet},
        first_stage_config={"target": "lvdm.models.autoencoder.AutoencoderKL", "params": VAE_PARAMS},
        cond_stage_config={
            "target": "lvdm.modules.encoders.condition.FrozenOpenCLIPEmbedder",
            "params": {"freeze": True, "layer": "penultimate"},
        },
    )
    return {"model": {"target": "lvdm.models.ddpm3d.LatentDiffusion", "params": params}}


def randomize_(module: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
    """Fill every parameter with seeded noise (norm weights around 1) so no branch is a no-op."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g) * std
            p.copy_(noise + 1.0 if ("norm" in name or name.startswith("ln")) and name.endswith("weight") else noise)
    return module


def write_config(config: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(config), path)
    return path


def write_checkpoint(config_path: Path, ckpt_path: Path, seed: int = 0, clip_folder: Path | None = None) -> dict:
    """Random weights for every part, saved as ``{'state_dict': ...}`` with the research prefixes.

    LVDM: the text encoder weights come from ``clip_folder`` (``cond_stage_model.transformer.*``,
    in the transformers-4 ``text_model.`` layout). VideoCrafter: a random OpenCLIP text tower
    (``cond_stage_model.model.*``). Schedule buffers are included as LatentDiffusion saves them.
    """
    from scalecrafter_video.models.ldm_autoencoder import AutoencoderKL
    from scalecrafter_video.models.ldm_pipeline import build_unet, make_alphas_cumprod, read_model_config
    from scalecrafter_video.models.open_clip_text import OpenCLIPTextEncoder

    spec = read_model_config(config_path)
    state = {}
    unet = randomize_(build_unet(spec), seed)
    state.update({f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()})
    vae = randomize_(AutoencoderKL(**spec.vae_params), seed + 1, std=0.03)
    state.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
    if spec.family == "videocrafter":
        text = randomize_(OpenCLIPTextEncoder(width=TEXT_WIDTH_VC, layers=2, heads=1, vocab_size=514, embed_dim=32), seed + 2)
        state.update({f"cond_stage_model.model.{k}": v for k, v in text.state_dict().items()})
    elif clip_folder is not None:
        from transformers import CLIPTextModel

        text = CLIPTextModel.from_pretrained(str(clip_folder))
        for k, v in text.state_dict().items():
            key = k if k.startswith("text_model.") else f"text_model.{k}"
            state[f"cond_stage_model.transformer.{key}"] = v
    ac = make_alphas_cumprod(spec)
    state["alphas_cumprod"] = ac.float()
    state["betas"] = (1 - ac / torch.cat([ac.new_ones(1), ac[:-1]])).float()
    torch.save({"state_dict": state}, ckpt_path)
    return state


def lvdm_folder(root: Path, seed: int = 0, **unet_overrides) -> tuple[Path, Path, Path]:
    """``(ckpt, yaml, clip folder)`` of a tiny LVDM model under ``root``."""
    clip = write_clip_folder(root / "clip")
    cfg = write_config(lvdm_config(**unet_overrides), root / "configs" / "t2v.yaml")
    ckpt = root / "models" / "t2v" / "model.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(cfg, ckpt, seed, clip_folder=clip)
    return ckpt, cfg, clip


def videocrafter_folder(root: Path, v2: bool = True, seed: int = 0) -> tuple[Path, Path, Path]:
    """``(ckpt, yaml, tokenizer folder)`` of a tiny VideoCrafter model under ``root``."""
    tok = root / "tokenizer"
    write_tokenizer(tok)
    cfg = write_config(videocrafter_config(v2), root / "configs" / "t2v.yaml")
    ckpt = root / "model.ckpt"
    write_checkpoint(cfg, ckpt, seed)
    return ckpt, cfg, tok
