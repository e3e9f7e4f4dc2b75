"""The embedded demo text-to-video model: components, tokenizer and on-disk layout.

``models/shapes-t2v/`` is a diffusers-style folder (``model_index.json`` naming a
``TextToVideoSDPipeline`` with ``unet``, ``scheduler``, ``text_encoder`` and ``tokenizer``; no VAE,
so the model works in pixel space on frames in ``[-1, 1]``). It is trained by
``scripts/train_demo_model.py`` on the synthetic scenes of :mod:`scalecrafter_video.demo.scenes`
and loads through the same code path as any local diffusers model.

The tokenizer is built here from the prompt grammar's word list: a byte-pair encoding learned on
those words (every known word becomes one token), stored as ``vocab.json`` / ``merges.txt`` and the
``tokenizers`` JSON, so no hub file is needed.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from .scenes import prompt_vocabulary

__all__ = [
    "DEMO_MODEL_DIR",
    "FRAMES",
    "TRAIN_SIZE",
    "build_text_encoder",
    "build_tokenizer",
    "build_unet",
    "build_scheduler",
    "learn_bpe",
    "save_demo_model",
]

#: Where the committed demo model lives (repository root / models / shapes-t2v).
# The repository keeps the model under models/ (the user's layout); the package reaches it through
# _data/shapes-t2v, a link in a checkout and a real folder in an installed wheel.
DEMO_MODEL_DIR = Path(__file__).resolve().parent.parent / "_data" / "shapes-t2v"
TRAIN_SIZE = (32, 32)
FRAMES = 8
MAX_TOKENS = 8  # <sot> a red circle moving left <eot> = 7 tokens
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


# --- tokenizer ------------------------------------------------------------------------------

def learn_bpe(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Learn byte-pair merges until every word in ``words`` is a single token.

    Words are split into characters, the last carrying CLIP's ``</w>`` suffix; the most frequent
    adjacent pair (ties broken by the pair itself, so the result is deterministic) is merged
    repeatedly. Returns ``(vocab, merges)`` with the special tokens first, then every single
    character (with and without ``</w>``), then every merged symbol in merge order.
    """
    seqs = {w: list(w[:-1]) + [w[-1] + "</w>"] for w in sorted(set(words))}
    merges: list[tuple[str, str]] = []
    while any(len(s) > 1 for s in seqs.values()):
        pairs = Counter()
        for s in seqs.values():
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += 1
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        for w, s in seqs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == best:
                    out.append(s[i] + s[i + 1])
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    vocab = {BOS: 0, EOS: 1}
    for c in sorted(set("".join(words))):
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return vocab, merges


def build_tokenizer(words: list[str] | None = None):
    """A ``CLIPTokenizer`` whose vocabulary is the demo prompt grammar (checked word by word)."""
    from transformers import CLIPTokenizer

    words = list(words or prompt_vocabulary())
    vocab, merges = learn_bpe(words)
    tok = CLIPTokenizer(
        vocab=vocab,
        merges=[tuple(m) for m in merges],
        model_max_length=MAX_TOKENS,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=EOS,
    )
    for w in words:  # every grammar word must be exactly one token
        ids = tok(w, add_special_tokens=False).input_ids
        if ids != [vocab[w + "</w>"]]:
            raise RuntimeError(f"tokenizer splits {w!r} into {ids}; BPE construction is inconsistent")
    return tok


def write_tokenizer_files(tokenizer, folder: Path) -> None:
    """Save the tokenizer, plus plain ``vocab.json``/``merges.txt`` for older transformers."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    words = prompt_vocabulary()
    vocab, merges = learn_bpe(words)
    (folder / "vocab.json").write_text(json.dumps(vocab, indent=1) + "\n")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))


# --- networks -------------------------------------------------------------------------------

TEXT_DIM = 64


def build_text_encoder(vocab_size: int, seed: int = 0):
    """A tiny CLIP text transformer (2 layers, width 64) trained jointly with the UNet."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_DIM,
        intermediate_size=2 * TEXT_DIM,
        projection_dim=TEXT_DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    torch.manual_seed(seed)
    return CLIPTextModel(cfg)


UNET_KWARGS = dict(
    sample_size=TRAIN_SIZE[0],
    in_channels=3,
    out_channels=3,
    # Attention (spatial self + text cross + temporal) only at the 8x8 level and the mid block: at
    # 16x16 and 32x32 it cost 60% of a training step and 5x the time of a 128x128 forward pass,
    # and the colour/shape/direction of one object is global information the 8x8 level carries.
    down_block_types=("DownBlock3D", "DownBlock3D", "CrossAttnDownBlock3D"),
    up_block_types=("CrossAttnUpBlock3D", "UpBlock3D", "UpBlock3D"),
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    norm_num_groups=8,
    cross_attention_dim=TEXT_DIM,
    attention_head_dim=4,  # UNet3D: heads of the spatial blocks; per-head dim of transformer_in
)


def build_unet(seed: int = 0, **overrides):
    """The demo ``UNet3DConditionModel`` (pixel space, 3 levels); ``overrides`` change kwargs."""
    import torch
    from diffusers import UNet3DConditionModel

    torch.manual_seed(seed)
    return UNet3DConditionModel(**{**UNET_KWARGS, **overrides})


def build_scheduler():
    """DDIM with cosine betas and v-prediction over 1000 training steps.

    v rather than eps: with cosine betas and trailing spacing the first step starts at
    ``alpha_bar ~ 0``, where an eps-model's ``x0 = (x - sqrt(1 - a) eps) / sqrt(a)`` amplifies
    its error without bound (a first eps model had x0 MSE 1.0 at t = 950 and its samples kept
    their noise); ``x0 = sqrt(a) x - sqrt(1 - a) v`` stays bounded at every step."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="v_prediction",
        clip_sample=True,
        clip_sample_range=1.0,
        set_alpha_to_one=True,
        timestep_spacing="trailing",
    )


#: Sampling defaults stored next to the model (read by the project's pipeline).
SAMPLING_DEFAULTS = {"num_frames": FRAMES, "fps": 8, "num_inference_steps": 25, "guidance_scale": 1.0, "eta": 0.0}


def save_demo_model(folder, unet, text_encoder, tokenizer, scheduler, defaults: dict | None = None) -> Path:
    """Write the diffusers-format folder (components via ``save_pretrained``, safetensors) and the
    sampling defaults (``scalecrafter_video.json``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    text_encoder.save_pretrained(folder / "text_encoder", safe_serialization=True)
    write_tokenizer_files(tokenizer, folder / "tokenizer")
    scheduler.save_pretrained(folder / "scheduler")
    import diffusers

    index = {
        "_class_name": "TextToVideoSDPipeline",
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet3DConditionModel"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (folder / "scalecrafter_video.json").write_text(json.dumps({**SAMPLING_DEFAULTS, **(defaults or {})}, indent=2) + "\n")
    return folder
