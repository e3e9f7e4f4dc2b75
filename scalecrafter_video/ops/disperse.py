"""Dispersed convolution (ScaleCrafter, Sec. 3.3): a closed-form r x r -> r' x r' kernel transform.

A small kernel ``a`` (r x r) is mapped to a large kernel ``b`` (r' x r') by a fixed linear
transform ``R`` (r'^2 x r^2, row-major flattening as ``tensor.view``) that solves, in the
least-squares sense over every input ``x`` (n x n),

* structure-level calibration:  conv_b(U x) = U conv_a(x),  U = bilinear upsampling by ``scale``
  (align-corners form, n -> scale * (n - 1) + 1), so the large kernel on an upsampled map behaves
  like the small kernel on the original map;
* pixel-level calibration:      conv_b(x)   = conv_a(x),    weighted by ``eta``,

where conv is a zero-padded "same" cross-correlation (PyTorch's convention). Each residual is
linear in ``x``; asking every coefficient to vanish gives ``S b = S_a a`` and ``P b = P_a a``, and

    b = argmin ||S b - S_a a||^2 + eta^2 ||P b - P_a a||^2 = pinv([S; eta P]) [S_a; eta P_a] a = R a.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

__all__ = [
    "bilinear_upsample_matrix",
    "calibration_systems",
    "conv_matrix",
    "disperse_weight",
    "dispersion_transform",
]


def bilinear_upsample_matrix(n: int, scale: int) -> np.ndarray:
    """1-D align-corners bilinear upsampling, shape ``(scale * (n - 1) + 1, n)``."""
    m = scale * (n - 1) + 1
    u = np.zeros((m, n))
    for i in range(m):
        pos = i / scale
        lo = min(int(np.floor(pos)), n - 1)
        frac = pos - lo
        u[i, lo] += 1.0 - frac
        if frac > 0:
            u[i, lo + 1] += frac
    return u


def conv_matrix(kernel_size: int, n: int) -> np.ndarray:
    """Zero-padded same-size 2-D cross-correlation on an n x n map, one matrix per tap.

    Returns ``E`` of shape ``(k * k, n * n, n * n)`` with ``vec(conv_w(x)) = sum_t w_t E[t] vec(x)``.
    """
    k, c = kernel_size, kernel_size // 2
    e = np.zeros((k * k, n * n, n * n))
    for ky in range(k):
        for kx in range(k):
            t = ky * k + kx
            for y in range(n):
                for x in range(n):
                    sy, sx = y + ky - c, x + kx - c
                    if 0 <= sy < n and 0 <= sx < n:
                        e[t, y * n + x, sy * n + sx] = 1.0
    return e


def calibration_systems(small: int, large: int, n: int, scale: int):
    """The linear systems of both calibrations.

    Returns ``(S, S_a, P, P_a)``: structure residual ``S b - S_a a`` and pixel residual
    ``P b - P_a a``, each row being one coefficient (output entry, input entry).
    """
    u1 = bilinear_upsample_matrix(n, scale)
    u = np.kron(u1, u1)  # (m^2, n^2), row-major 2-D upsampling
    m = u1.shape[0]
    e_large_up = conv_matrix(large, m)  # acts on the upsampled map
    e_small = conv_matrix(small, n)
    e_large = conv_matrix(large, n)
    s = np.stack([(e @ u).ravel() for e in e_large_up], axis=1)
    s_a = np.stack([(u @ e).ravel() for e in e_small], axis=1)
    p = np.stack([e.ravel() for e in e_large], axis=1)
    p_a = np.stack([e.ravel() for e in e_small], axis=1)
    return s, s_a, p, p_a


@lru_cache(maxsize=32)
def _transform(small: int, large: int, n: int, scale: int, eta: float) -> np.ndarray:
    s, s_a, p, p_a = calibration_systems(small, large, n, scale)
    a_mat = np.concatenate([s, eta * p])
    c_mat = np.concatenate([s_a, eta * p_a])
    r, *_ = np.linalg.lstsq(a_mat, c_mat, rcond=None)
    r.setflags(write=False)
    return r


def dispersion_transform(
    small: int = 3, large: int = 5, input_size: int = 3, scale: int = 2, eta: float = 0.05
) -> np.ndarray:
    """The transform ``R`` (``large**2 x small**2``, float64, read-only, cached).

    Defaults follow the paper's setting: 3 -> 5, upsampling scale 2, pixel weight eta = 0.05,
    calibrated on a 3 x 3 input (the official reference call `kernel_disperse(3, 5, 3, 2, 0.05)`,
    whose column sums 1.127 / 1.061 / 1.000 match the shipped `R20to1_new.mat`).
    """
    if small % 2 == 0 or large % 2 == 0 or large <= small:
        raise ValueError(f"need odd kernel sizes with large > small, got {small} -> {large}")
    if input_size < small or scale < 1 or eta < 0:
        raise ValueError("input_size must be >= the small kernel, scale >= 1 and eta >= 0")
    return _transform(small, large, input_size, scale, float(eta))


_TORCH_CACHE: dict[tuple, torch.Tensor] = {}


def disperse_weight(weight: torch.Tensor, transform: np.ndarray) -> torch.Tensor:
    """Apply ``R`` to every spatial kernel of ``weight`` (``(..., r, r) -> (..., r', r')``).

    Works on Conv2d weights ``(o, i, r, r)`` and Conv3d weights ``(o, i, t, r, r)``; dtype and
    device follow ``weight`` and gradients flow through (the transform is a constant).
    """
    r = weight.shape[-1]
    r_large = int(round(transform.shape[0] ** 0.5))
    if weight.shape[-2] != r or transform.shape[1] != r * r:
        raise ValueError(f"transform expects {transform.shape[1]} kernel taps, weight has {tuple(weight.shape[-2:])}")
    key = (hash(transform.tobytes()), transform.shape, weight.dtype, weight.device)
    rt = _TORCH_CACHE.get(key)
    if rt is None:
        # A normal tensor even when first asked for under torch.inference_mode(): an inference tensor
        # kept in this cache would break every later call that autograd records.
        with torch.inference_mode(False):
            rt = torch.tensor(np.ascontiguousarray(transform.T), dtype=weight.dtype, device=weight.device)
        _TORCH_CACHE[key] = rt
    flat = weight.reshape(*weight.shape[:-2], r * r)
    return (flat @ rt).reshape(*weight.shape[:-2], r_large, r_large)
