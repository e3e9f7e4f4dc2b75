"""FVD / KVD statistics against independent float64 references."""

import math

import numpy as np
import pytest
import scipy.linalg

from scalecrafter_video.errors import ScaleCrafterError
from scalecrafter_video.metrics import frechet_distance, kernel_distance
from scalecrafter_video.metrics.stats import frechet_distance_from_stats, frechet_terms, kernel_distance_subsets


def _features(n, d, seed, shift=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d)) / math.sqrt(d)
    return (rng.normal(size=(n, d)) @ mix) * scale + shift


@pytest.mark.parametrize("n,d", [(64, 400), (300, 400), (800, 64)])
def test_fvd_identity_is_zero(n, d):
    x = _features(n, d, seed=n) * 10.0  # logit-like magnitudes
    value = frechet_distance(x, x)
    assert 0.0 <= value <= 1e-6


@pytest.mark.parametrize("n,d", [(50, 400), (500, 32)])
def test_fvd_is_exactly_symmetric(n, d):
    x = _features(n, d, seed=1)
    y = _features(n + 7, d, seed=2, shift=0.3, scale=1.4)
    assert frechet_distance(x, y) == frechet_distance(y, x)
    assert frechet_distance(x, y) > 0


def test_fvd_matches_scipy_sqrtm_reference():
    x = _features(600, 20, seed=3)
    y = _features(700, 20, seed=4, shift=0.5, scale=0.8)
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    expected = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    assert frechet_distance(x, y) == pytest.approx(expected, rel=1e-9)


def test_fvd_closed_form_for_diagonal_gaussians():
    a = np.array([1.0, 4.0, 9.0, 0.25])
    b = np.array([4.0, 1.0, 9.0, 1.0])
    mu_a, mu_b = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    expected = ((mu_a - mu_b) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = frechet_distance_from_stats(mu_a, np.diag(a), mu_b, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-12)


def test_fvd_terms_split_the_distance_into_mean_and_spread():
    x = _features(300, 16, seed=5)
    # a pure shift moves only the mean term, a pure rescale about the mean only the spread term
    shifted, scaled = x + 0.5, (x - x.mean(0)) * 2.0 + x.mean(0)
    mean, spread = frechet_terms(x, shifted)
    assert mean == pytest.approx(16 * 0.25, rel=1e-12) and abs(spread) < 1e-9
    mean, spread = frechet_terms(x, scaled)
    assert mean < 1e-20 and spread == pytest.approx(np.trace(np.cov(x, rowvar=False)), rel=1e-9)  # (2 - 1)^2 Tr
    y = _features(200, 16, seed=6, shift=0.3, scale=1.4)
    assert sum(frechet_terms(x, y)) == frechet_distance(x, y)


def test_fvd_constant_sets_is_squared_mean_difference():
    x = np.tile(np.arange(400.0), (16, 1))
    y = x + 0.5
    assert frechet_distance(x, y) == pytest.approx(400 * 0.25, rel=1e-12)


def test_fvd_uses_ddof_one():
    # Two 1-D points {0, 2}: variance with ddof=1 is 2, so FVD against a point mass at 1 is 2.
    x = np.array([[0.0], [2.0]])
    y = np.array([[1.0], [1.0]])
    assert frechet_distance(x, y) == pytest.approx(2.0, rel=1e-12)


def _naive_kvd(x, y):
    d = len(x[0])

    def k(u, v):
        return (sum(ui * vi for ui, vi in zip(u, v)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def test_kvd_matches_naive_double_loop():
    x = _features(7, 5, seed=5).tolist()
    y = _features(9, 5, seed=6, shift=0.4).tolist()
    assert kernel_distance(np.array(x), np.array(y)) == pytest.approx(_naive_kvd(x, y), rel=1e-11)


def test_kvd_blocked_sum_matches_full_matrices():
    x = _features(1300, 16, seed=7) * 3
    y = _features(1100, 16, seed=8, shift=0.2) * 3
    d = 16
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    m, n = len(x), len(y)
    expected = ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                - 2 * kxy.mean())
    assert kernel_distance(x, y) == pytest.approx(expected, rel=1e-9)


def test_kvd_sign_behaviour():
    x = _features(200, 16, seed=9)
    assert kernel_distance(x, x) < 0  # unbiased estimator against itself
    near = kernel_distance(x, _features(200, 16, seed=10))
    far = kernel_distance(x, _features(200, 16, seed=10, shift=1.0))
    assert far > 10 * abs(near)


def test_kvd_subsets_full_size_equals_full_estimate():
    x, y = _features(40, 8, seed=11), _features(30, 8, seed=12, shift=0.3)
    mean, std = kernel_distance_subsets(x[:30], y, num_subsets=4, subset_size=1000)
    assert std == pytest.approx(0.0, abs=1e-12)
    assert mean == pytest.approx(kernel_distance(x[:30], y), rel=1e-12)
    m1 = kernel_distance_subsets(x, y, num_subsets=5, subset_size=10, seed=3)
    m2 = kernel_distance_subsets(x, y, num_subsets=5, subset_size=10, seed=3)
    assert m1 == m2 and m1[1] > 0


@pytest.mark.parametrize(
    "a,b",
    [
        (np.zeros((1, 4)), np.zeros((5, 4))),
        (np.zeros((5, 4)), np.zeros((5, 3))),
        (np.full((5, 4), np.nan), np.zeros((5, 4))),
        (np.zeros(5), np.zeros((5, 1))),
    ],
)
def test_bad_feature_inputs_raise_user_errors(a, b):
    with pytest.raises(ScaleCrafterError):
        frechet_distance(a, b)
    with pytest.raises(ScaleCrafterError):
        kernel_distance(a, b)


def test_statistics_run_on_one_blas_thread_and_restore_the_count():
    from scalecrafter_video.metrics import stats

    controls = stats._blas_controls()
    if not controls:
        pytest.skip("no OpenBLAS in this numpy")
    get, put = controls[0]
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(40, 400)), rng.normal(size=(30, 400))
    seen = []
    real_eigh = np.linalg.eigh

    def spy(m):
        seen.append(get())
        return real_eigh(m)

    before = get()
    results = []
    try:
        for n in (1, 2):
            put(n)
            np.linalg.eigh = spy
            try:
                results.append(stats.frechet_distance(a, b))
            finally:
                np.linalg.eigh = real_eigh
            assert get() == n  # restored
    finally:
        put(before)
    assert seen and set(seen) == {1}
    assert results[0] == results[1]  # independent of the caller's BLAS thread count
