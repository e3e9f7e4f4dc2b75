"""Inception-v1 I3D (RGB stream) in PyTorch, numerically matching TF-Hub ``deepmind/i3d-kinetics-400/1``.

What makes it the TF-Hub network and not one of the many near-ports:

* TF ``SAME`` padding computed from the runtime size for every conv and max-pool
  (``out = ceil(n / s)``, ``pad = max((out - 1) s + k - n, 0)``, the odd pixel at the end);
* Sonnet-v1 batch norm in inference form: ``y = x * r + (beta - mean * r)`` with
  ``r = (moving_var + 1e-3) ** -0.5``; no gamma, eps 1e-3;
* the ``Logits`` endpoint: ``AvgPool3D(2, 7, 7)`` VALID, 1x1x1 conv 1024 -> 400 with bias,
  squeeze of H and W, mean over the remaining time positions (pre-softmax).

Input ``(N, 3, T, 224, 224)`` float32 in ``[-1, 1]`` with ``T >= 9``; output ``(N, 400)``.
Where the weights come from and how they are checked: :mod:`.i3d_weights`.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ScaleCrafterError

__all__ = ["BN_EPS", "I3D", "I3DInputError", "INPUT_SIZE", "MIN_FRAMES", "NUM_CLASSES", "optimize_i3d", "same_pads"]

BN_EPS = 1e-3
MIN_FRAMES = 9
NUM_CLASSES = 400
INPUT_SIZE = 224


class I3DInputError(ScaleCrafterError, ValueError):
    """The clip tensor does not fit the I3D Logits endpoint (T >= 9, 224x224, 3 channels)."""


def same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    """TF ``SAME`` padding ``(lo, hi)`` for size ``n``, kernel ``k``, stride ``s`` (extra pixel at ``hi``)."""
    out = -(-n // s)
    pad = max((out - 1) * s + k - n, 0)
    return pad // 2, pad - pad // 2


def _pads_3d(shape_thw, kernel, stride):
    return [same_pads(n, k, s) for n, k, s in zip(shape_thw, kernel, stride)]


class Unit3D(nn.Module):
    """Conv3d (SAME, no bias) -> batch norm (inference, eps 1e-3, no gamma) -> ReLU.

    ``(N, C_in, T, H, W) -> (N, C_out, ceil(T/s_t), ceil(H/s_h), ceil(W/s_w))``. Parameters
    ``weight (C_out, C_in, kT, kH, kW)``; buffers ``beta``, ``running_mean``, ``running_var``
    ``(C_out,)``; after :meth:`fold_batchnorm_` the conv carries a ``bias`` and the buffers go.
    """

    def __init__(self, in_ch, out_ch, kernel=(1, 1, 1), stride=(1, 1, 1), batch_norm=True, bias=False, relu=True):
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)
        self.relu = relu
        self.batch_norm = batch_norm
        self.weight = nn.Parameter(torch.empty(out_ch, in_ch, *self.kernel))
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        if batch_norm:
            self.register_buffer("beta", torch.zeros(out_ch))
            self.register_buffer("running_mean", torch.zeros(out_ch))
            self.register_buffer("running_var", torch.ones(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _pads_3d(x.shape[-3:], self.kernel, self.stride)
        if all(lo == hi for lo, hi in pads):
            padding = tuple(lo for lo, _ in pads)
        else:
            x = F.pad(x, [p for lo_hi in reversed(pads) for p in lo_hi])
            padding = 0
        y = F.conv3d(x, self.weight, self.bias, self.stride, padding)
        if self.batch_norm:
            r = torch.rsqrt(self.running_var + BN_EPS)
            shift = self.beta - self.running_mean * r
            y = y * r.view(-1, 1, 1, 1) + shift.view(-1, 1, 1, 1)
        return F.relu(y) if self.relu else y

    @torch.no_grad()
    def fold_batchnorm_(self) -> None:
        """Fold the batch norm into the conv in place (float64 arithmetic, float32 result)."""
        if not self.batch_norm:
            return
        r = torch.rsqrt(self.running_var.double() + BN_EPS)
        w = (self.weight.double() * r.view(-1, 1, 1, 1, 1)).to(self.weight.dtype)
        b = (self.beta.double() - self.running_mean.double() * r).to(self.weight.dtype)
        self.weight = nn.Parameter(w, requires_grad=False)
        self.bias = nn.Parameter(b, requires_grad=False)
        del self.beta, self.running_mean, self.running_var
        self.batch_norm = False


class SameMaxPool3d(nn.Module):
    """Max-pool with TF ``SAME`` padding (pads count as -inf). ``(N, C, T, H, W)`` -> ``(N, C, ceil(T/s), ...)``."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel = tuple(kernel)
        self.stride = tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _pads_3d(x.shape[-3:], self.kernel, self.stride)
        if all(lo == hi and 2 * lo <= k for (lo, hi), k in zip(pads, self.kernel)):
            return F.max_pool3d(x, self.kernel, self.stride, tuple(lo for lo, _ in pads))
        x = F.pad(x, [p for lo_hi in reversed(pads) for p in lo_hi], value=float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four branches concatenated on channels: 1x1 | 1x1->3x3 | 1x1->3x3 | maxpool3->1x1."""

    def __init__(self, in_ch, b0, b1a, b1b, b2a, b2b, b3):
        super().__init__()
        self.Branch_0 = nn.Sequential(OrderedDict(Conv3d_0a_1x1=Unit3D(in_ch, b0)))
        self.Branch_1 = nn.Sequential(
            OrderedDict(Conv3d_0a_1x1=Unit3D(in_ch, b1a), Conv3d_0b_3x3=Unit3D(b1a, b1b, (3, 3, 3)))
        )
        self.Branch_2 = nn.Sequential(
            OrderedDict(Conv3d_0a_1x1=Unit3D(in_ch, b2a), Conv3d_0b_3x3=Unit3D(b2a, b2b, (3, 3, 3)))
        )
        self.Branch_3 = nn.Sequential(
            OrderedDict(MaxPool3d_0a_3x3=SameMaxPool3d((3, 3, 3), (1, 1, 1)), Conv3d_0b_1x1=Unit3D(in_ch, b3))
        )
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x):
        return torch.cat([self.Branch_0(x), self.Branch_1(x), self.Branch_2(x), self.Branch_3(x)], dim=1)


# (name, b0, b1a, b1b, b2a, b2b, b3) in network order.
_INCEPTION_TABLE = (
    ("Mixed_3b", 64, 96, 128, 16, 32, 32),
    ("Mixed_3c", 128, 128, 192, 32, 96, 64),
    ("Mixed_4b", 192, 96, 208, 16, 48, 64),
    ("Mixed_4c", 160, 112, 224, 24, 64, 64),
    ("Mixed_4d", 128, 128, 256, 24, 64, 64),
    ("Mixed_4e", 112, 144, 288, 32, 64, 64),
    ("Mixed_4f", 256, 160, 320, 32, 128, 128),
    ("Mixed_5b", 256, 160, 320, 32, 128, 128),
    ("Mixed_5c", 384, 192, 384, 48, 128, 128),
)
# Max-pools placed before the named block.
_POOLS_BEFORE = {
    "Mixed_3b": ("MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
}


class I3D(nn.Module):
    """Inception-v1 I3D, RGB stream, up to the ``Logits`` endpoint.

    Args:
        channel_divisor: divide every hidden width by this (1 = the real network; larger
            values build tiny random-weight instances for tests; same layer structure).

    ``forward(x)``: ``x`` float ``(N, 3, T, 224, 224)`` in ``[-1, 1]``, ``T >= 9`` ->
    ``(N, 400)`` pre-softmax logits averaged over the ``ceil(ceil(ceil(T/2)/2)/2) - 1``
    temporal positions. ``features(x)`` returns the ordered endpoint dict instead.
    """

    def __init__(self, channel_divisor: int = 1):
        super().__init__()
        d = int(channel_divisor)
        if d < 1:
            raise ValueError("channel_divisor must be >= 1")
        self.channel_divisor = d

        def c(n):
            return max(1, n // d)

        self.Conv3d_1a_7x7 = Unit3D(3, c(64), (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = SameMaxPool3d((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(c(64), c(64))
        self.Conv3d_2c_3x3 = Unit3D(c(64), c(192), (3, 3, 3))
        ch = c(192)
        self._order = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3"]
        for name, *widths in _INCEPTION_TABLE:
            if name in _POOLS_BEFORE:
                pname, k, s = _POOLS_BEFORE[name]
                setattr(self, pname, SameMaxPool3d(k, s))
                self._order.append(pname)
            block = InceptionBlock(ch, *[c(w) for w in widths])
            setattr(self, name, block)
            self._order.append(name)
            ch = block.out_channels
        self.feature_channels = ch
        self.Logits = nn.Module()
        self.Logits.Conv3d_0c_1x1 = Unit3D(ch, NUM_CLASSES, batch_norm=False, bias=True, relu=False)

    @staticmethod
    def check_input(x: torch.Tensor) -> None:
        """Raise :class:`I3DInputError` unless ``x`` is float ``(N, 3, T>=9, 224, 224)``."""
        if not isinstance(x, torch.Tensor) or x.ndim != 5:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise I3DInputError(f"I3D expects a 5-D tensor (N, 3, T, 224, 224), got {shape}")
        n, ch, t, h, w = x.shape
        if ch != 3:
            raise I3DInputError(f"I3D expects 3 RGB channels in dim 1 of (N, 3, T, 224, 224), got {ch}")
        if (h, w) != (INPUT_SIZE, INPUT_SIZE):
            raise I3DInputError(
                f"I3D Logits endpoint needs 224x224 frames, got {h}x{w}; resize first "
                "(scalecrafter_video.metrics.preprocess_videos)"
            )
        if t < MIN_FRAMES:
            raise I3DInputError(
                f"I3D needs at least {MIN_FRAMES} frames for a temporal logit position, got T={t}; "
                "repeat frames up to 16 and flag the result as non-standard rather than zero-padding"
            )
        if not x.is_floating_point():
            raise I3DInputError(f"I3D expects float input in [-1, 1], got dtype {x.dtype}")

    def features(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        """All endpoints: ``name -> (N, C, T', H', W')``; ``"Logits"`` is ``(N, 400)``."""
        self.check_input(x)
        out = OrderedDict()
        for name in self._order:
            x = getattr(self, name)(x)
            out[name] = x
        out["Logits"] = self._logits(x)
        return out

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool3d(x, kernel_size=(2, 7, 7), stride=1)  # VALID
        if x.shape[-2:] != (1, 1):
            raise I3DInputError(f"I3D Logits: spatial size {tuple(x.shape[-2:])} after pooling, expected 1x1")
        x = self.Logits.Conv3d_0c_1x1(x)  # (N, 400, T', 1, 1)
        return x.flatten(3).squeeze(3).mean(dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if self.is_optimized:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        for name in self._order:
            x = getattr(self, name)(x)
        return self._logits(x)

    @property
    def is_optimized(self) -> bool:
        return getattr(self, "_optimized", False)


def optimize_i3d(model: I3D, channels_last: bool = True) -> I3D:
    """A copy of ``model`` with every batch norm folded into its conv (``W' = W r``,
    ``b' = beta - mean r``) and, optionally, ``channels_last_3d`` weights. Logits change only
    at float32 rounding level. The original model is left untouched."""
    opt = copy.deepcopy(model)
    for m in opt.modules():
        if isinstance(m, Unit3D):
            m.fold_batchnorm_()
    if channels_last:
        opt = opt.to(memory_format=torch.channels_last_3d)
        opt._optimized = True
    opt.eval()
    return opt
