"""Noise-damped classifier-free guidance (ScaleCrafter Eq. 7) and the CFG batch layout.

Pipelines run CFG as one UNet call on ``[uncond, cond]``: every batch-shaped argument stacks the
unconditional half first. The layout is *known*, never guessed from the tensors: the caller says
the call is a CFG batch (``denoising_step(..., cfg=True)``) or the diffusers pipeline does
(``do_classifier_free_guidance``). With ``2B`` the sample's leading dim, a tensor argument is
batch-shaped when its leading dim is ``k * 2B`` for an integer ``k``: ``2B`` for latents, text
embeddings, SDXL's ``added_cond_kwargs``, SVD's ``added_time_ids``, I2VGen-XL's image
embeddings and ``fps``; ``2B x frames`` for AnimateDiff's per-frame repeated text embeddings
(``repeat_interleave`` keeps the unconditional rows first). Its first half is the unconditional
part. Everything else (scalar timesteps, per-frame tensors of other sizes) is passed unchanged.
"""

from __future__ import annotations

import dataclasses

import torch

__all__ = ["combine_damped", "output_tensor", "shared_down_blocks", "uncond_half", "with_output_tensor",
           "wrap_down_block"]


def uncond_half(value, batch: int):
    """The unconditional half of every batch-shaped tensor in ``value`` (nested dicts / lists)."""
    if torch.is_tensor(value):
        n = value.shape[0] if value.ndim > 0 else 0
        return value[: n // 2] if n and n % batch == 0 else value
    if isinstance(value, dict):
        return {k: uncond_half(v, batch) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(uncond_half(v, batch) for v in value)
    return value


def combine_damped(eps: torch.Tensor, eps_damped: torch.Tensor) -> torch.Tensor:
    """``[u, c]`` -> ``[u', u' + (c - u)]`` with ``u'`` the damped unconditional estimate.

    Whatever linear guidance the pipeline then applies (``u + w (c - u)``, per-frame ``w`` for SVD)
    gives ``u' + w (c - u)``: Eq. (7) of the paper.
    """
    eps_uncond, eps_cond = eps.chunk(2)
    eps_damped = eps_damped.to(eps.dtype)
    return torch.cat([eps_damped, eps_damped + (eps_cond - eps_uncond)])


def output_tensor(output):
    if torch.is_tensor(output):
        return output
    if isinstance(output, tuple):
        return output[0]
    return output.sample


def with_output_tensor(output, new):
    if torch.is_tensor(output):
        return new
    if isinstance(output, tuple):
        return (new, *output[1:])
    if dataclasses.is_dataclass(output):
        return type(output)(**{**{f.name: getattr(output, f.name) for f in dataclasses.fields(output)}, "sample": new})
    output.sample = new
    return output


def shared_down_blocks(main: dict, damped: dict, num_blocks: int) -> int:
    """How many leading ``down_blocks`` compute the same in the main and the damped pass: those
    in which every layer has the same ``(factor, dispersed)`` action (or none) in both tables."""
    for k in range(num_blocks):
        prefix = f"down_blocks.{k}."
        if any(main.get(key) != damped.get(key) for key in {*main, *damped} if key.startswith(prefix)):
            return k
    return num_blocks


def _copy(value):
    if torch.is_tensor(value):
        return value.clone()
    if isinstance(value, (list, tuple)):
        return type(value)(_copy(v) for v in value)
    return value


def wrap_down_block(block, index: int, state):
    """Replace ``block.forward`` (instance attribute) so that, while ``index < state.reuse_blocks``,
    the main pass keeps a copy of the block's unconditional output and the damped pass returns it
    instead of running the block. Returns the undo function."""
    previous = block.__dict__.get("forward")
    inner = block.forward

    def forward(*args, **kwargs):
        if index < state.reuse_blocks:
            if state.in_damped_pass:
                return state.reused.pop(index)
            out = inner(*args, **kwargs)
            state.reused[index] = _copy(uncond_half(out, state.batch))
            return out
        return inner(*args, **kwargs)

    block.forward = forward

    def undo():
        if previous is None:
            block.__dict__.pop("forward", None)
        else:
            block.forward = previous

    return undo
