"""Preprocessing: TF1-legacy bilinear resize (hand-computed values), scaling, layout, variants."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scalecrafter_video.metrics import preprocess_videos
from scalecrafter_video.metrics.preprocess import PreprocessError, resize_frames


def _row(values):
    """(1, W, 1) image holding one row."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1)


def test_tf1_upsample_row_has_no_half_pixel_offset():
    out = resize_frames(_row([0, 1, 2, 3]), (1, 8))
    assert out.view(-1).tolist() == [0, 0.5, 1, 1.5, 2, 2.5, 3, 3]


def test_tf1_downsample_picks_pixels_zero_and_two():
    out = resize_frames(_row([10, 20, 30, 40]), (1, 2))
    assert out.view(-1).tolist() == [10, 30]


def test_tf1_constant_image_stays_exact():
    img = torch.full((1, 37, 53, 3), 201, dtype=torch.uint8)
    out = resize_frames(img, (224, 224))
    assert torch.equal(out, torch.full((1, 224, 224, 3), 201.0))


def test_tf1_2x2_to_3x3_hand_computed():
    img = torch.tensor([[0.0, 10.0], [20.0, 30.0]]).view(2, 2, 1)
    # scale 2/3: sources 0, 2/3, 4/3 (the last clamps to pixel 1 with weight 1/3).
    expected = [[0, 20 / 3, 10], [40 / 3, 20, 70 / 3], [20, 80 / 3, 30]]
    out = resize_frames(img, (3, 3)).view(3, 3)
    assert np.allclose(out.numpy(), expected, atol=1e-5)


def _tf1_loop(img: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Direct per-pixel transcription of TF1's legacy bilinear resize, float32."""
    ih, iw, _ = img.shape
    sy, sx = np.float32(ih / oh), np.float32(iw / ow)
    out = np.zeros((oh, ow, img.shape[2]), np.float32)
    for y in range(oh):
        fy = np.float32(y) * sy
        y0 = int(np.floor(fy)); y1 = min(y0 + 1, ih - 1); ay = np.float32(fy - y0)
        for x in range(ow):
            fx = np.float32(x) * sx
            x0 = int(np.floor(fx)); x1 = min(x0 + 1, iw - 1); ax = np.float32(fx - x0)
            tl, tr, bl, br = img[y0, x0], img[y0, x1], img[y1, x0], img[y1, x1]
            top = tl + (tr - tl) * ax
            bottom = bl + (br - bl) * ax
            out[y, x] = top + (bottom - top) * ay
    return out


@pytest.mark.parametrize("src,dst", [((7, 5), (11, 13)), ((64, 48), (23, 17)), ((5, 9), (5, 4))])
def test_tf1_matches_per_pixel_transcription(src, dst):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(*src, 3)).astype(np.float32)
    got = resize_frames(torch.from_numpy(img), dst).numpy()
    np.testing.assert_allclose(got, _tf1_loop(img, *dst), rtol=0, atol=1e-4)


@pytest.mark.parametrize("src,dst", [((64, 48), (224, 224)), ((300, 400), (224, 224))])
def test_half_pixel_variant_matches_torch_interpolate(src, dst):
    rng = np.random.default_rng(1)
    img = torch.from_numpy(rng.integers(0, 256, size=(*src, 3)).astype(np.float32))
    ref = F.interpolate(img.permute(2, 0, 1)[None], size=dst, mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    np.testing.assert_allclose(resize_frames(img, dst, "half_pixel").numpy(), ref.numpy(), atol=1e-2)  # float32 lerp order differs
    # ...and it is a different resize from the reference one.
    assert (resize_frames(img, dst, "tf1_legacy") - ref).abs().max() > 1.0


def test_preprocess_layout_range_and_channel_order():
    v = np.zeros((2, 9, 224, 224, 3), np.uint8)
    v[0, :, :, :, 0] = 255  # video 0: pure red
    v[1] = np.arange(224, dtype=np.uint8)[None, None, :, None]  # video 1: horizontal ramp
    x = preprocess_videos(v)
    assert x.shape == (2, 3, 9, 224, 224) and x.dtype == torch.float32
    assert torch.all(x[0, 0] == 1.0) and torch.all(x[0, 1:] == -1.0)
    expected = 2.0 * torch.arange(224, dtype=torch.float32) / 255.0 - 1.0
    assert torch.equal(x[1, 2, 4, 17], expected)  # 224x224 frames pass through unresized


def test_preprocess_resizes_each_frame_straight_to_224():
    rng = np.random.default_rng(2)
    v = rng.integers(0, 256, size=(1, 10, 48, 80, 3), dtype=np.uint8)
    x = preprocess_videos(v)
    assert x.shape == (1, 3, 10, 224, 224)
    ref = resize_frames(torch.from_numpy(v[0, 3]), (224, 224))
    assert torch.allclose(x[0, :, 3], (2.0 * ref / 255.0 - 1.0).permute(2, 0, 1))


def test_preprocess_list_of_clips_with_different_sizes_and_grayscale():
    clips = [np.full((9, 32, 32, 3), 255, np.uint8), np.zeros((9, 64, 48, 1), np.uint8)]
    x = preprocess_videos(clips)
    assert x.shape == (2, 3, 9, 224, 224)
    assert torch.all(x[0] == 1.0) and torch.all(x[1] == -1.0)


def test_short_side_center_crop_variant():
    v = np.zeros((1, 9, 100, 200, 3), np.uint8)
    v[:, :, :, :40] = 255  # left fifth white: cropped away by a centre crop
    x = preprocess_videos(v, resize_method="short_side_center_crop")
    assert x.shape == (1, 3, 9, 224, 224)
    assert torch.all(x == -1.0)
    assert preprocess_videos(v)[0, :, :, :, 0].max() == 1.0  # the reference keeps it


@pytest.mark.parametrize(
    "bad",
    [np.zeros((1, 9, 8, 8, 3), np.float32), np.zeros((9, 8, 8, 3), np.uint8), np.zeros((1, 9, 8, 8, 4), np.uint8)],
)
def test_preprocess_rejects_bad_inputs(bad):
    with pytest.raises(PreprocessError):
        preprocess_videos(bad)


def test_preprocess_rejects_unknown_method():
    with pytest.raises(PreprocessError, match="tf1_legacy"):
        preprocess_videos(np.zeros((1, 9, 8, 8, 3), np.uint8), resize_method="bicubic")
