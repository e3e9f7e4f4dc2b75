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


def _four_tap(frames: torch.Tensor, size, half_pixel: bool) -> torch.Tensor:
    """The direct formula (the implementation before the separable one): gather the four taps of
    every output pixel from the float32 frames and blend horizontally, then vertically."""
    x = frames.to(torch.float32)
    (h_in, w_in), (h_out, w_out) = x.shape[-3:-1], size
    if (h_in, w_in) == (h_out, w_out):
        return x.clone()

    def taps(n_in, n_out):
        scale = torch.tensor(n_in / n_out, dtype=torch.float32)
        j = torch.arange(n_out, dtype=torch.float32)
        src = ((j + 0.5) * scale - 0.5).clamp_min(0.0) if half_pixel else j * scale
        i0f = torch.floor(src)
        i0 = i0f.to(torch.int64).clamp(max=n_in - 1)
        return i0, (i0 + 1).clamp(max=n_in - 1), src - i0f

    y0, y1, ay = taps(h_in, h_out)
    x0, x1, ax = taps(w_in, w_out)
    r0, r1 = x.index_select(-3, y0), x.index_select(-3, y1)
    p00, p01, p10, p11 = r0.index_select(-2, x0), r0.index_select(-2, x1), r1.index_select(-2, x0), r1.index_select(-2, x1)
    top = p00 + (p01 - p00) * ax[:, None]
    bottom = p10 + (p11 - p10) * ax[:, None]
    return top + (bottom - top) * ay[:, None, None]


@pytest.mark.parametrize("src", [(256, 256), (64, 48), (480, 640), (224, 225), (1, 7), (300, 100), (224, 224)])
@pytest.mark.parametrize("method", ["tf1_legacy", "half_pixel"])
def test_separable_resize_is_bitwise_the_four_tap_formula(src, method):
    rng = np.random.default_rng(sum(src))
    frames = torch.from_numpy(rng.integers(0, 256, size=(3, *src, 3), dtype=np.uint8))
    ref = _four_tap(frames, (224, 224), method == "half_pixel")
    assert torch.equal(resize_frames(frames, (224, 224), method), ref)
    floats = frames.double() / 3.0  # any real dtype: computed in float32 like the reference
    assert torch.equal(resize_frames(floats, (224, 224), method), _four_tap(floats, (224, 224), method == "half_pixel"))


def test_preprocess_is_bitwise_the_reference_formula_for_every_method():
    rng = np.random.default_rng(7)
    clips = [rng.integers(0, 256, size=(9, h, w, c), dtype=np.uint8) for h, w, c in [(256, 256, 3), (90, 160, 3), (50, 40, 1)]]
    got = preprocess_videos(clips)
    for k, clip in enumerate(clips):
        t = torch.from_numpy(clip).expand(*clip.shape[:-1], 3)
        ref = 2.0 * _four_tap(t, (224, 224), False) / 255.0 - 1.0
        assert torch.equal(got[k], ref.permute(3, 0, 1, 2))
    # the other tools' crop protocol: half-pixel short side to 224, then the centre crop
    wide = clips[1]
    ref = _four_tap(torch.from_numpy(wide), (224, 398), True)[:, :, 87:311]
    got = preprocess_videos([wide], resize_method="short_side_center_crop")[0]
    assert torch.equal(got, (2.0 * ref / 255.0 - 1.0).permute(3, 0, 1, 2))
