"""The ScaleCrafter engine on a UNet, one module per mechanism.

- :mod:`.layers`: what is spatial (the convs and self-attentions the method may touch);
- :mod:`.position`: which denoising step a UNet call belongs to, and the tau windows;
- :mod:`.schedule`: per call, which layer runs at which dilation;
- :mod:`.conv_patch`: the ``_conv_forward`` patch (re-dilation, dispersion);
- :mod:`.ndcfg`: noise-damped CFG and the ``[uncond, cond]`` batch layout;
- :mod:`.attn_sf`: Attn-SF's query scaling;
- :mod:`.install`: ``apply_scalecrafter`` / ``remove_scalecrafter``;
- :mod:`.compile`: ``compile_unet`` (``torch.compile`` with one graph per phase).
"""

from .compile import compile_unet
from .install import NATIVE_SIZES, apply_scalecrafter, find_unet, native_size, remove_scalecrafter, scalecrafter_state
from .layers import ConvSite, resolve_table, spatial_convs, spatial_self_attentions, unet_levels

__all__ = [
    "NATIVE_SIZES",
    "ConvSite",
    "apply_scalecrafter",
    "compile_unet",
    "find_unet",
    "native_size",
    "remove_scalecrafter",
    "resolve_table",
    "scalecrafter_state",
    "spatial_convs",
    "spatial_self_attentions",
    "unet_levels",
]
