"""What ScaleCrafter may touch: the spatial 3x3 convs and spatial self-attention of a UNet's blocks.

The spatial-only rule lives here and nowhere else. A module is a candidate only when it sits in
``down_blocks`` / ``mid_block`` / ``up_blocks`` (LDM-style: ``input_blocks`` / ``middle_block`` /
``output_blocks``) and outside every layer that mixes frames:

* by path component (:data:`TEMPORAL_PARTS`): UNet3D's ``temp_convs`` / ``temp_attentions`` /
  ``transformer_in``, AnimateDiff's ``motion_modules``, SVD's ``temporal_res_block`` /
  ``temporal_transformer_blocks`` / ``time_mixer``, I2VGen-XL's ``image_latents_*`` stacks,
  LVDM's ``attn1_tmp`` / ``attn2_tmp``, VideoCrafter's ``temopral_conv`` / ``init_attn``;
* by ancestor class (``Temporal*``, ``TransformerTemporalModel``, ``AnimateDiffTransformer3D``);
* by kernel: a conv whose spatial kernel is 1x1 (e.g. SVD's (3, 1, 1) temporal convs) is never
  a candidate, whatever its name.

``conv_in``, ``conv_out`` and auxiliary stacks outside the blocks are never touched either.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from torch import nn

from ..errors import ConfigError
from ..naming import diffusers_name, ldm_layout

__all__ = [
    "ConvSite",
    "TEMPORAL_PARTS",
    "is_temporal_path",
    "match_sites",
    "resolve_table",
    "spatial_convs",
    "spatial_self_attentions",
    "unet_levels",
]

TEMPORAL_PARTS = frozenset(
    {
        "temp_convs",  # diffusers UNet3D TemporalConvLayer
        "temp_attentions",  # diffusers UNet3D TransformerTemporalModel
        "transformer_in",  # diffusers UNet3D / I2VGen-XL frame attention after conv_in
        "motion_modules",  # AnimateDiff
        "temporal_res_block",  # SVD SpatioTemporalResBlock: (3, 1, 1) convs
        "temporal_transformer_blocks",  # SVD TransformerSpatioTemporalModel
        "time_mixer",  # SVD AlphaBlender (spatial / temporal mixing)
        "time_pos_embed",
        "image_latents_proj_in",  # I2VGen-XL image-latent stacks (attention over frames)
        "image_latents_temporal_encoder",
        "image_latents_context_embedding",
        "temopral_conv",  # VideoCrafter TemporalConvBlock (sic, as in the checkpoints)
        "temporal_conv",
        "attn1_tmp",  # LVDM temporal self-attention
        "attn2_tmp",
        "init_attn",  # VideoCrafter frame attention after conv_in
    }
)
_TEMPORAL_CLASSES = ("TransformerTemporalModel", "AnimateDiffTransformer3D", "TransformerTemporalModelOutput")
_BLOCK_PREFIXES = ("down_blocks.", "mid_block.", "up_blocks.")
_LDM_BLOCK_PREFIXES = ("input_blocks.", "middle_block.", "output_blocks.")


def is_temporal_path(name: str, class_names: list[str] | tuple[str, ...] = ()) -> bool:
    """True when a module lives inside a temporal layer (by path component or ancestor class)."""
    if TEMPORAL_PARTS.intersection(name.split(".")):
        return True
    return any(c.startswith("Temporal") or c in _TEMPORAL_CLASSES for c in class_names)


@dataclass(frozen=True)
class ConvSite:
    """A conv ScaleCrafter may act on. ``key`` is its diffusers-scheme name (the schedule's name)."""

    name: str
    key: str
    module: nn.Module


def spatial_kernel(conv: nn.Module) -> tuple[int, int] | None:
    """The spatial ``(kh, kw)`` of a Conv2d / Conv3d, else ``None``."""
    if isinstance(conv, nn.Conv2d):
        return tuple(conv.kernel_size)
    if isinstance(conv, nn.Conv3d):
        return tuple(conv.kernel_size[1:])
    return None


def _prefixes(name: str):
    parts = name.split(".")
    for i in range(1, len(parts)):
        yield ".".join(parts[:i])


def _site_key(name: str, layout) -> str:
    # PEFT LoRA: ``conv1.base_layer`` and ``conv1.lora_A.<adapter>`` act as one conv ``conv1``;
    # lora_B is 1x1 and commutes with the spatial resizes, so dilating both 3x3 parts is exact.
    if ".lora_A." in name:
        name = name.split(".lora_A.")[0]
    return diffusers_name(name, layout)


def _in_spatial_block(name: str, modules: dict[str, nn.Module]) -> bool:
    if not name.startswith(_BLOCK_PREFIXES + _LDM_BLOCK_PREFIXES):
        return False
    ancestors = [type(modules[p]).__name__ for p in _prefixes(name) if p in modules]
    return not is_temporal_path(name, ancestors)


def spatial_convs(unet: nn.Module) -> list[ConvSite]:
    """Every conv inside the down/mid/up blocks with a spatial kernel > 1, outside temporal layers."""
    modules = dict(unet.named_modules())
    layout = ldm_layout(modules)
    sites = []
    for name, module in modules.items():
        kernel = spatial_kernel(module)
        if kernel is None or max(kernel) <= 1:
            continue
        key = _site_key(name, layout)
        if not key.startswith(_BLOCK_PREFIXES) or not _in_spatial_block(name, modules):
            continue
        sites.append(ConvSite(name, key, module))
    return sites


def spatial_self_attentions(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every self-attention over pixels (``attn1`` with a ``to_q``) in the blocks."""
    modules = dict(unet.named_modules())
    found = []
    for name, module in modules.items():
        if name.rsplit(".", 1)[-1] != "attn1" or not isinstance(getattr(module, "to_q", None), nn.Linear):
            continue
        if _in_spatial_block(name, modules):
            found.append((name, module))
    return found


def _matches(glob: str, site: ConvSite) -> bool:
    return fnmatchcase(site.key, glob) or fnmatchcase(site.name, glob)


def match_sites(glob: str, sites: list[ConvSite], what: str) -> list[ConvSite]:
    """The sites a schedule glob names; a glob that names none is an error."""
    hit = [s for s in sites if _matches(glob, s)]
    if not hit:
        keys = sorted({s.key for s in sites})
        sample = ", ".join(keys[:3] + (["..."] if len(keys) > 3 else []))
        raise ConfigError(
            f"{what} entry {glob!r} matches no re-dilatable conv of this UNet "
            f"({len(keys)} candidates, e.g. {sample}); conv_in, conv_out, 1x1 and temporal convs are never dilated"
        )
    return hit


def resolve_table(table: dict[str, float], sites: list[ConvSite], what: str) -> dict[str, float]:
    """``{site key: factor}`` of a ``{glob: factor}`` table; later globs override earlier ones."""
    out: dict[str, float] = {}
    for glob, factor in table.items():
        for s in match_sites(glob, sites, what):
            out[s.key] = factor
    return out


def unet_levels(unet: nn.Module) -> int:
    """Number of resolution levels (``len(down_blocks)``; LDM-style: downsamplers + 1)."""
    blocks = getattr(unet, "down_blocks", None)
    if blocks is not None:
        return len(blocks)
    names = [n for n, _ in unet.named_modules()]
    if ldm_layout(names) is None:
        raise ConfigError(f"cannot tell the resolution levels of {type(unet).__name__}")
    return 1 + sum(1 for n in names if n.startswith("input_blocks.") and n.endswith(".0.op"))
