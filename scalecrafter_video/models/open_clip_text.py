"""The OpenCLIP text tower as stored in VideoCrafter checkpoints (``cond_stage_model.model.*``).

VideoCrafter conditions on the *penultimate* layer of OpenCLIP ViT-H-14's text transformer
followed by the final LayerNorm. The weights live in the checkpoint; only a CLIP BPE tokenizer
folder (``vocab.json`` + ``merges.txt``, e.g. the ``tokenizer`` folder of Stable Diffusion 2.x)
is needed besides it. OpenCLIP's tokenisation is reproduced: ``[sot] + bpe(text) + [eot]``,
truncated to 77 with ``eot`` kept last, padded with id 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..errors import ModelLoadError

__all__ = ["OpenCLIPTextEncoder", "open_clip_token_ids"]

_PREFIX = "transformer.resblocks."


class _ResidualAttentionBlock(nn.Module):
    """Pre-LN transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))`` (GELU MLP)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, hidden))
        self.mlp.add_module("gelu", nn.GELU())
        self.mlp.add_module("c_proj", nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=attn_mask)[0]
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList(_ResidualAttentionBlock(width, heads) for _ in range(layers))


class OpenCLIPTextEncoder(nn.Module):
    """Token ids ``(b, context_length)`` -> hidden states ``(b, context_length, width)``.

    ``layer``: ``"last"`` or ``"penultimate"`` (VideoCrafter); ``ln_final`` is applied either way.
    Parameter names equal OpenCLIP's ``CLIP`` text tower (``token_embedding``, ``positional_embedding``,
    ``transformer.resblocks.i.attn.in_proj_weight``, ``ln_final``, ``text_projection``, ``logit_scale``).
    """

    def __init__(
        self,
        width: int = 1024,
        layers: int = 24,
        heads: int = 16,
        vocab_size: int = 49408,
        context_length: int = 77,
        embed_dim: int = 1024,
        layer: str = "penultimate",
    ):
        super().__init__()
        if layer not in ("last", "penultimate"):
            raise ValueError(f"layer must be 'last' or 'penultimate', got {layer!r}")
        self.layer = layer
        self.context_length = context_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.zeros(context_length, width))
        self.transformer = _Transformer(width, layers, heads)
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.zeros(width, embed_dim))
        self.logit_scale = nn.Parameter(torch.zeros(()))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        mask = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], layer: str = "penultimate") -> OpenCLIPTextEncoder:
        """Build with the sizes read off the weights (heads = width / 64, OpenCLIP's text rule)."""
        try:
            vocab_size, width = state["token_embedding.weight"].shape
            context_length = state["positional_embedding"].shape[0]
            embed_dim = state["text_projection"].shape[1]
        except KeyError as exc:
            raise ModelLoadError(f"OpenCLIP text weights: missing key cond_stage_model.model.{exc.args[0]}") from None
        layers = len({k[len(_PREFIX) :].split(".")[0] for k in state if k.startswith(_PREFIX)})
        if layers == 0:
            raise ModelLoadError("OpenCLIP text weights: no transformer.resblocks.* keys")
        heads = max(width // 64, 1)
        return cls(width, layers, heads, vocab_size, context_length, embed_dim, layer)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.token_embedding(tokens) + self.positional_embedding
        mask = self.attn_mask.to(x.dtype)
        stop = len(self.transformer.resblocks) - (1 if self.layer == "penultimate" else 0)
        for block in self.transformer.resblocks[:stop]:
            x = block(x, mask)
        return self.ln_final(x)


def open_clip_token_ids(tokenizer, texts: Sequence[str], context_length: int = 77) -> torch.Tensor:
    """OpenCLIP-style ids ``(len(texts), context_length)`` with a ``transformers`` CLIP tokenizer."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if bos is None or eos is None:
        raise ModelLoadError("the tokenizer has no <|startoftext|>/<|endoftext|> tokens; pass a CLIP tokenizer folder")
    out = torch.zeros(len(texts), context_length, dtype=torch.long)
    for row, text in enumerate(texts):
        ids = [bos] + tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
        if len(ids) > context_length:
            ids = ids[:context_length]
            ids[-1] = eos
        out[row, : len(ids)] = torch.tensor(ids)
    return out
