"""The conv patch: a scheduled conv's ``_conv_forward`` runs re-dilated (and dispersed) when asked.

Only ``_conv_forward`` is replaced, on the instance: the module, its class, its parameters and
its ``state_dict`` keys stay as they are, and LoRA/PEFT wrappers and offload hooks keep working
because the effective weight is what reaches ``_conv_forward``.
"""

from __future__ import annotations

import math
import types
import warnings

import torch
from torch import nn

from ..errors import ConfigError
from ..ops.disperse import disperse_weight
from ..ops.redilate import as_axes, redilated_conv
from .layers import ConvSite

__all__ = ["check_conv", "patch_conv", "unpatch_conv"]


def check_conv(site: ConvSite, dispersed: bool) -> tuple[int, ...]:
    """The conv's zero padding as a tuple; a ConfigError for convs that cannot be re-dilated."""
    conv = site.module
    if conv.padding_mode != "zeros":
        raise ConfigError(
            f"{site.name}: padding_mode={conv.padding_mode!r} is not supported (re-dilation changes the padding, "
            "which PyTorch ignores for non-zero padding modes)"
        )
    if any(d != 1 for d in conv.dilation[-2:]):
        raise ConfigError(f"{site.name} is already dilated ({conv.dilation}); only undilated convs can be re-dilated")
    kh, kw = conv.kernel_size[-2:]
    if kh != kw or kh % 2 == 0:
        raise ConfigError(f"{site.name}: only square odd spatial kernels can be re-dilated, got {conv.kernel_size}")
    if dispersed and kh != 3:
        raise ConfigError(f"{site.name}: dispersion needs a 3x3 kernel, got {kh}x{kw}")
    padding = conv.padding
    if isinstance(padding, str):  # 'same' (stride 1) or 'valid'
        padding = tuple((k - 1) // 2 if padding == "same" else 0 for k in conv.kernel_size)
    return tuple(padding)


def _forward(state, key: str):
    """``state.actions[key] = (dilation, dispersed)`` for this call, or absent (plain conv)."""

    def _conv_forward(self, input, weight, bias):
        action = state.actions.get(key)
        if action is None:
            return type(self)._conv_forward(self, input, weight, bias)
        d, dispersed = action
        if dispersed:
            weight, d = disperse_weight(weight, state.transform), d / 2.0
        _check_extent(state, key, d, self.kernel_size[-1], input.shape[-2:])
        is3d = weight.ndim == 5
        return redilated_conv(
            input,
            weight,
            bias,
            stride=tuple(self.stride),
            padding=self._scalecrafter_padding,
            groups=self.groups,
            dilation=d,
            reference_kernel=tuple(self.kernel_size[-2:]),
            temporal_dilation=self.dilation[0] if is3d else 1,
        )

    return _conv_forward


def _check_extent(state, key: str, d: float, kernel: int, hw) -> None:
    """Warn (once per installation, naming the first such layer) when a factor is too large for the
    feature map: every tap but the centre then reads only zero padding, and the conv acts as 1x1.
    Under ``torch.compile`` the test is on trace-time constants; only the rare warning breaks the graph."""
    for axis, (factor, size) in enumerate(zip(as_axes(d), hw)):
        reach = math.ceil(factor - 1e-9) * (kernel - 1) // 2
        if factor <= 1.0 or reach < size or state.warned_layers:
            continue
        _warn_extent(state, key, factor, reach, tuple(hw), axis, size)


@torch.compiler.disable
def _warn_extent(state, key: str, factor: float, reach: int, hw, axis: int, size: int) -> None:
    state.warned_layers.add(key)
    warnings.warn(
        f"{key}: dilation {factor:g} on a {hw[0]}x{hw[1]} feature map reaches {reach} pixels from the centre "
        f"along its {('height', 'width')[axis]}, so those taps read only padding; use a factor below {size} "
        "for this layer (warned once; other layers may be affected too)",
        RuntimeWarning, stacklevel=5,
    )


def patch_conv(conv: nn.Module, state, key: str, padding: tuple[int, ...]) -> None:
    conv._scalecrafter_padding = padding
    conv._conv_forward = types.MethodType(_forward(state, key), conv)


def unpatch_conv(conv: nn.Module) -> None:
    conv.__dict__.pop("_conv_forward", None)
    conv.__dict__.pop("_scalecrafter_padding", None)
