"""scripts/diagnose_fvd.py's grain measure: zero on a flat fill, and it tells texture inside the
object from grain in the background."""

import numpy as np
import pytest


@pytest.fixture(scope="module")
def diagnose(load_script):
    return load_script("diagnose_fvd")


def clips(inside_noise: float, background_noise: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    v = np.full((2, 3, 32, 32, 3), 20.0)
    v[:, :, 8:24, 10:26] = (200.0, 40.0, 40.0)  # a red square on a dark background
    box = np.zeros((32, 32), bool)
    box[8:24, 10:26] = True
    v[:, :, box] += rng.normal(0, inside_noise, v[:, :, box].shape)
    v[:, :, ~box] += rng.normal(0, background_noise, v[:, :, ~box].shape)
    return np.clip(v, 0, 255).round().astype(np.uint8)


def test_grain_is_zero_on_flat_fills_and_tells_inside_from_background(diagnose):
    assert diagnose.grain(clips(0, 0)) == (0.0, 0.0)  # the object's edge is not texture
    inside, outside = diagnose.grain(clips(12, 0))
    assert inside > 0.02 and outside == 0.0
    inside, outside = diagnose.grain(clips(0, 6))
    assert inside == 0.0 and outside > 0.01
