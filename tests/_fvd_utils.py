"""Shared helpers for the FVD tests: tiny random-weight I3D instances and small video files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scalecrafter_video.metrics.i3d import I3D, Unit3D
from scalecrafter_video.metrics.i3d_weights import save_i3d_weights


def tiny_i3d(divisor: int = 16, seed: int = 0) -> I3D:
    """Random I3D with every hidden width divided by ``divisor`` and non-trivial BN statistics."""
    g = torch.Generator().manual_seed(seed)
    model = I3D(channel_divisor=divisor)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, Unit3D):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.batch_norm:
                    c = m.beta.shape[0]
                    m.beta.copy_(torch.randn(c, generator=g) * 0.1)
                    m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval().requires_grad_(False)


def tiny_weights_file(path: Path, divisor: int = 16, seed: int = 0) -> Path:
    return save_i3d_weights(tiny_i3d(divisor, seed), path, source=f"test-random-seed{seed}")


def random_videos(n: int, t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, t, h, w, 3) with smooth content (so lossy codecs keep it recognisable)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(n, t, max(h // 8, 1), max(w // 8, 1), 3)).astype(np.uint8)
    return base.repeat(8, axis=2)[:, :, :h].repeat(8, axis=3)[:, :, :, :w]


def write_mp4(path: Path, frames: np.ndarray, codec: str = "libx264", fps: int = 8) -> Path:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 8_000_000
        for fr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(fr), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_gif(path: Path, frames: np.ndarray) -> Path:
    from PIL import Image

    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=100, loop=0, optimize=False)
    return path


def write_frame_folder(folder: Path, frames: np.ndarray, ext: str = "png", pattern: str = "{}") -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{pattern.format(i)}.{ext}")
    return folder


def _openblas_thread_controls():
    """(get, set) function pairs of the OpenBLAS builds loaded in this process (Linux; else none)."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return []
    controls = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", "", "_64"):
            for prefix in ("scipy_openblas_", "openblas_"):
                get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    controls.append((get, put))
                    break
            else:
                continue
            break
    return controls


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run each test with one torch and one BLAS thread: on small shared CPUs, spinning worker
    threads make 400x400 eigendecompositions 10-50x slower. Results do not depend on it."""
    before = torch.get_num_threads()
    blas = [(put, get()) for get, put in _openblas_thread_controls()]
    torch.set_num_threads(1)
    for put, _ in blas:
        put(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        for put, n in blas:
            put(n)
