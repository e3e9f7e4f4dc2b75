"""FVD and KVD statistics on feature arrays (float64 throughout).

FVD (Frechet distance between Gaussians fitted to the two feature sets)::

    FVD = |mu_a - mu_b|^2 + Tr S_a + Tr S_b - 2 Tr (S_a^1/2 S_b S_a^1/2)^1/2

with both square roots taken through symmetric eigendecompositions whose eigenvalues are
clipped to 0 below ``n * eps * max|w|`` (``n`` the dimension, ``eps`` float64 epsilon). The
trace term is averaged over both orders, so ``FVD(a, b) == FVD(b, a)`` bit for bit.

KVD: unbiased MMD^2 with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3`` over the full
sets (LVDM/TATS ``polynomial_mmd``); optionally KID-style subsets, reported as mean +- std.

Every public function runs its BLAS / LAPACK calls on one thread (:func:`one_blas_thread`): the
matrices are 400x400, one thread does them in milliseconds, and the result no longer depends on
the machine's core count (OpenBLAS sums in a thread-count-dependent order: the last bit of FVD
changed between 1 and 2 threads). Next to a torch process that has just used its OpenMP threads,
a multi-threaded ``eigh`` on a busy 2-core machine took 4-8 s instead of 0.1 s.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import threading

import numpy as np

from .inputs import InputSetError

__all__ = ["feature_statistics", "frechet_distance", "frechet_distance_from_stats", "frechet_terms",
           "frechet_terms_from_stats", "kernel_distance",
           "kernel_distance_subsets", "one_blas_thread"]


_BLAS_CONTROLS: list | None = None
_BLAS_LOCK = threading.RLock()


def _blas_controls() -> list:
    """``(get, set)`` thread-count functions of the OpenBLAS builds loaded in this process (Linux)."""
    global _BLAS_CONTROLS
    if _BLAS_CONTROLS is None:
        found = []
        paths = []
        if sys.platform.startswith("linux"):
            try:
                with open("/proc/self/maps") as f:
                    paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line})
            except OSError:
                paths = []
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix in ("scipy_openblas_", "openblas_"):
                for suffix in ("64_", "", "_64"):
                    get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                    put = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                    if get is not None and put is not None:
                        get.restype, put.argtypes = ctypes.c_int, [ctypes.c_int]
                        found.append((get, put))
                        break
                else:
                    continue
                break
        _BLAS_CONTROLS = found
    return _BLAS_CONTROLS


@contextlib.contextmanager
def one_blas_thread():
    """Run the block's OpenBLAS calls on one thread, then restore the previous count (no-op where
    no OpenBLAS is found, e.g. MKL or Accelerate builds of numpy)."""
    with _BLAS_LOCK:
        controls = _blas_controls()
        before = [get() for get, _ in controls]
        for _, put in controls:
            put(1)
        try:
            yield
        finally:
            for (_, put), n in zip(controls, before):
                put(n)


def _single_threaded(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with one_blas_thread():
            return fn(*args, **kwargs)

    return wrapper


def _as_features(x, name: str) -> np.ndarray:
    f = np.asarray(x, dtype=np.float64)
    if f.ndim != 2:
        raise InputSetError(f"{name}: expected features of shape (N, D), got {f.shape}")
    if f.shape[0] < 2:
        raise InputSetError(f"{name}: need at least 2 feature vectors for a covariance, got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise InputSetError(f"{name}: features contain NaN or inf")
    return f


@_single_threaded
def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (``ddof=1``) of ``(N, D)`` features, float64."""
    f = _as_features(features, "features")
    mu = f.mean(axis=0)
    centred = f - mu
    sigma = centred.T @ centred / (f.shape[0] - 1)
    return mu, sigma


def _clip_eigenvalues(w: np.ndarray) -> np.ndarray:
    """Zero eigenvalues at or below ``n * eps * max|w|`` (rounding noise of a PSD matrix)."""
    if w.size == 0:
        return w
    threshold = w.shape[0] * np.finfo(np.float64).eps * np.abs(w).max()
    return np.where(w > threshold, w, 0.0)


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix ``(D, D)`` via ``eigh`` with the relative clip."""
    w, v = np.linalg.eigh(0.5 * (sigma + sigma.T))
    return (v * np.sqrt(_clip_eigenvalues(w))) @ v.T


def _trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray) -> float:
    """``Tr (A^1/2 B A^1/2)^1/2`` through two symmetric eigendecompositions."""
    root_a = _psd_sqrt(sigma_a)
    m = root_a @ sigma_b @ root_a
    lam = np.linalg.eigvalsh(0.5 * (m + m.T))
    return float(np.sqrt(_clip_eigenvalues(lam)).sum())


@_single_threaded
def frechet_terms_from_stats(mu_a, sigma_a, mu_b, sigma_b) -> tuple[float, float]:
    """The two parts of the Frechet distance: ``(|mu_a - mu_b|^2, Tr(A + B - 2 (A^1/2 B A^1/2)^1/2))``.

    The first says how far apart the set means are, the second how differently the sets spread;
    their sum is :func:`frechet_distance_from_stats`."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.asarray(sigma_a, np.float64), np.asarray(sigma_b, np.float64)
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape or sigma_a.shape != mu_a.shape * 2:
        raise InputSetError(
            f"statistics do not match: mu {mu_a.shape} vs {mu_b.shape}, sigma {sigma_a.shape} vs {sigma_b.shape}"
        )
    diff = mu_a - mu_b
    mean_term = float(diff @ diff)
    trace_term = float(np.trace(sigma_a)) + float(np.trace(sigma_b))
    # Both orders agree mathematically; averaging them makes the result exactly symmetric.
    cross = 0.5 * (_trace_sqrt_product(sigma_a, sigma_b) + _trace_sqrt_product(sigma_b, sigma_a))
    cov_term = trace_term - 2.0 * cross
    # Identical spreads give rounding-level negatives; anything larger would be a bug.
    if cov_term < 0.0 and -cov_term <= 1e-9 * max(trace_term, 1.0):
        cov_term = 0.0
    return mean_term, cov_term


def frechet_distance_from_stats(mu_a, sigma_a, mu_b, sigma_b) -> float:
    """Frechet distance between ``N(mu_a, sigma_a)`` and ``N(mu_b, sigma_b)`` (float64, symmetric)."""
    mean_term, cov_term = frechet_terms_from_stats(mu_a, sigma_a, mu_b, sigma_b)
    return mean_term + cov_term


@_single_threaded
def frechet_terms(feats_a, feats_b) -> tuple[float, float]:
    """:func:`frechet_terms_from_stats` of two feature sets ``(N_a, D)`` and ``(N_b, D)``."""
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise InputSetError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    return frechet_terms_from_stats(*feature_statistics(a), *feature_statistics(b))


@_single_threaded
def frechet_distance(feats_a, feats_b) -> float:
    """FVD between two feature sets ``(N_a, D)`` and ``(N_b, D)`` (float64, ``ddof=1``)."""
    return sum(frechet_terms(feats_a, feats_b))


def _kernel_sum(x: np.ndarray, y: np.ndarray, exclude_diagonal: bool, block: int = 1024) -> float:
    """Sum of ``(x_i . y_j / d + 1)^3`` over all pairs (minus ``i == j`` if asked), in row blocks."""
    d = x.shape[1]
    total = 0.0
    for start in range(0, x.shape[0], block):
        k = (x[start : start + block] @ y.T / d + 1.0) ** 3
        total += float(k.sum())
        if exclude_diagonal:
            rows = np.arange(start, min(start + block, x.shape[0]))
            total -= float(k[rows - start, rows].sum())
    return total


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    m, n = x.shape[0], y.shape[0]
    kxx = _kernel_sum(x, x, exclude_diagonal=True) / (m * (m - 1))
    kyy = _kernel_sum(y, y, exclude_diagonal=True) / (n * (n - 1))
    kxy = _kernel_sum(x, y, exclude_diagonal=False) / (m * n)
    return kxx + kyy - 2.0 * kxy


@_single_threaded
def kernel_distance(feats_a, feats_b) -> float:
    """KVD: unbiased MMD^2 with ``k(x, y) = (x.y / d + 1)^3`` over the full sets (float64).

    Can be negative (unbiased estimator); compare disjoint sets, not a set with itself.
    """
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if a.shape[1] != b.shape[1]:
        raise InputSetError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    return _mmd2_unbiased(a, b)


@_single_threaded
def kernel_distance_subsets(
    feats_a, feats_b, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID-style KVD: ``num_subsets`` draws of ``min(subset_size, N_a, N_b)`` rows from each
    set without replacement; returns ``(mean, std)`` (population std) of the unbiased MMD^2."""
    a, b = _as_features(feats_a, "feats_a"), _as_features(feats_b, "feats_b")
    if num_subsets < 1:
        raise InputSetError(f"num_subsets must be >= 1, got {num_subsets}")
    size = min(int(subset_size), a.shape[0], b.shape[0])
    if size < 2:
        raise InputSetError("subset size must be at least 2")
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            _mmd2_unbiased(a[rng.choice(a.shape[0], size, replace=False)], b[rng.choice(b.shape[0], size, replace=False)])
            for _ in range(num_subsets)
        ]
    )
    return float(values.mean()), float(values.std())
