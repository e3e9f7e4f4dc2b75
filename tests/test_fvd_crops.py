"""FVD_c: I3D on native-resolution 224x224 crops at a fixed seeded grid, the same for both sets."""

from __future__ import annotations

import numpy as np
import pytest

from scalecrafter_video.cli import main
from scalecrafter_video.metrics import compute_fvd
from scalecrafter_video.metrics.inputs import CROP_SIZE, VideoSet, crop_positions, crop_set

T = 9


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_i3d_weights):
    return tiny_i3d_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors", divisor=16, seed=5)


def test_crops_are_the_same_positions_for_both_sets_and_native_pixels(videos):
    real, fake = videos.random(2, T, 240, 296, seed=1), videos.random(3, T, 240, 296, seed=2)
    h, w = real.shape[2:4]
    a, b = crop_set(VideoSet(real), 3, seed=7), crop_set(VideoSet(fake), 3, seed=7)
    assert len(a) == 6 and len(b) == 9
    for k, (fy, fx) in enumerate(crop_positions(3, seed=7)):
        top, left = int(round(fy * (h - CROP_SIZE))), int(round(fx * (w - CROP_SIZE)))
        np.testing.assert_array_equal(a.items[k].load(T), real[0, :, top:top + 224, left:left + 224])
        np.testing.assert_array_equal(b.items[3 + k].load(T), fake[1, :, top:top + 224, left:left + 224])
    # another seed is another grid; the positions are spread, not all the same corner
    assert not np.array_equal(crop_positions(3, seed=7), crop_positions(3, seed=8))
    assert len({tuple(p) for p in np.round(crop_positions(4, seed=7), 6)}) == 4


def test_fvd_c_of_a_set_with_itself_is_zero_and_differs_from_another_set(weights):
    rng = np.random.default_rng(3)
    sharp = rng.integers(0, 256, (4, T, 256, 288, 3), dtype=np.uint8)
    same = compute_fvd(sharp, sharp.copy(), num_frames=T, weights=weights, crops=2, cache=False, progress=False,
                       device="cpu")
    assert same.fvd_crops == pytest.approx(0.0, abs=1e-6) and same.num_crops == 2 and "FVD_c" in same.protocol["crops"]
    assert same.fvd == pytest.approx(0.0, abs=1e-6)  # the resized FVD is still reported next to it
    other = compute_fvd(sharp, rng.integers(0, 256, sharp.shape, dtype=np.uint8) // 2, num_frames=T, weights=weights,
                        crops=2, cache=False, progress=False, device="cpu")
    assert other.fvd_crops > 1e-3 and other.kvd_crops is not None


def test_crops_need_frames_of_at_least_224(weights, videos, tmp_path, capsys):
    small = tmp_path / "small.npy"
    np.save(small, videos.random(2, T, 128, 160, seed=4))
    code = main(["fvd", str(small), str(small), "--num-frames", str(T), "--i3d-weights", str(weights), "--crops", "2",
                 "--no-cache", "--no-progress", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "smaller than the 224x224 crops" in err


def test_small_crops_slice_the_native_pixels_and_the_cli_takes_their_size(weights, videos, tmp_path, capsys):
    # patch-FID's rule for small models: crops at the training resolution, each resized to 224 like a frame
    clips = videos.random(2, T, 64, 96, seed=6)
    crops = crop_set(VideoSet(clips), 2, seed=3, size=32)
    for k, (fy, fx) in enumerate(crop_positions(2, seed=3)):
        top, left = int(round(fy * 32)), int(round(fx * 64))
        np.testing.assert_array_equal(crops.items[2 + k].load(T), clips[1, :, top:top + 32, left:left + 32])
    path = tmp_path / "clips.npy"
    np.save(path, clips)
    code = main(["fvd", str(path), str(path), "--num-frames", str(T), "--i3d-weights", str(weights), "--crops", "2",
                 "--crop-size", "32", "--no-cache", "--no-progress", "--device", "cpu"])
    out = capsys.readouterr().out
    assert code == 0 and "2 native-resolution 32x32 crops per clip" in out and "FVD_c_9: 0.0000" in out
    code = main(["fvd", str(path), str(path), "--num-frames", str(T), "--i3d-weights", str(weights), "--crops", "2",
                 "--crop-size", "80", "--no-cache", "--no-progress", "--device", "cpu"])
    assert code == 2 and "smaller than the 80x80 crops" in capsys.readouterr().err
