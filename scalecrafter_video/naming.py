"""Module names: the diffusers <-> LDM-style name mapping (which layers are spatial: engine/layers.py).

Schedules name layers in diffusers' scheme (``down_blocks.l.resnets.j.conv1``). LDM-style UNets
(Stable Diffusion originals, LVDM, VideoCrafter) use ``input_blocks`` / ``middle_block`` /
``output_blocks``; :func:`diffusers_name` translates those so one schedule serves both.
"""

from __future__ import annotations

import re

__all__ = ["diffusers_name", "ldm_layout"]

def ldm_layout(names) -> tuple[int, int] | None:
    """``(num_res_blocks, mid_last_index)`` of an LDM-style UNet from its module names, else None."""
    names = list(names)
    if not any(n.startswith("input_blocks.") for n in names):
        return None
    ops = sorted(
        int(m.group(1)) for n in names if (m := re.fullmatch(r"input_blocks\.(\d+)\.0\.op", n))
    )
    if ops:
        num_res_blocks = ops[0] - 1
    else:  # a single-level UNet has no downsampler
        num_res_blocks = max(int(n.split(".")[1]) for n in names if n.startswith("input_blocks.") and n.count(".") >= 1)
    mids = [int(m.group(1)) for n in names if (m := re.fullmatch(r"middle_block\.(\d+)\.in_layers", n))]
    return num_res_blocks, (max(mids) if mids else 2)


def diffusers_name(name: str, layout: tuple[int, int] | None) -> str:
    """The diffusers-scheme name of an LDM-style module path (``layout`` from :func:`ldm_layout`).

    Names that are already diffusers-style (``layout is None``) or have no counterpart are
    returned unchanged. PEFT's ``.base_layer`` suffix is dropped.
    """
    name = name.replace(".base_layer", "")
    if layout is None:
        return name
    nrb, mid_last = layout
    per_level = nrb + 1
    parts = name.split(".")
    resnet_leaf = {"in_layers.2": "conv1", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}

    def leaf(rest: list[str]) -> str | None:
        return resnet_leaf.get(".".join(rest))

    if parts[:2] == ["input_blocks", "0"] and parts[2:] == ["0"]:
        return "conv_in"
    if parts[:2] == ["out", "2"] and len(parts) == 2:
        return "conv_out"
    if parts[0] == "input_blocks" and len(parts) >= 4:
        i = int(parts[1])
        level, j = divmod(i - 1, per_level)
        if parts[2:] == ["0", "op"]:
            return f"down_blocks.{level}.downsamplers.0.conv"
        if parts[2] == "0" and (conv := leaf(parts[3:])):
            return f"down_blocks.{level}.resnets.{j}.{conv}"
    if parts[0] == "middle_block" and len(parts) >= 3:
        k = int(parts[1])
        if k in (0, mid_last) and (conv := leaf(parts[2:])):
            return f"mid_block.resnets.{0 if k == 0 else 1}.{conv}"
    if parts[0] == "output_blocks" and len(parts) >= 4:
        level, j = divmod(int(parts[1]), per_level)
        if parts[2] == "0" and (conv := leaf(parts[3:])):
            return f"up_blocks.{level}.resnets.{j}.{conv}"
        if parts[2] != "0" and parts[3:] == ["conv"]:
            return f"up_blocks.{level}.upsamplers.0.conv"
    return name
