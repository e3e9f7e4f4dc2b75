"""Pure tensor maths: re-dilated convolution, dispersion transform, attention scaling."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scalecrafter_video.ops.entropy_scale import entropy_scale
from scalecrafter_video.ops.disperse import (
    bilinear_upsample_matrix,
    calibration_systems,
    disperse_weight,
    dispersion_transform,
)
from scalecrafter_video.ops.redilate import conv_output_size, redilated_conv, split_dilation


def _conv(x, w, b, stride=1, padding=1, d=1.0, **kw):
    return redilated_conv(x, w, b, stride=(stride, stride), padding=(padding, padding), groups=1, dilation=d, **kw)


def test_dilation_one_is_the_original_conv_exactly():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 3, 11, 9), torch.randn(4, 3, 3, 3), torch.randn(4)
    for stride in (1, 2):
        assert torch.equal(_conv(x, w, b, stride=stride, d=1.0), F.conv2d(x, w, b, stride, 1))


@pytest.mark.parametrize("d", [2, 3, 4])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(16, 16), (17, 23), (9, 5)])
def test_integer_dilation_equals_dilated_conv2d(d, stride, size):
    torch.manual_seed(1)
    x, w, b = torch.randn(1, 2, *size), torch.randn(3, 2, 3, 3), torch.randn(3)
    ref = F.conv2d(x, w, b, stride, d, d)
    out = _conv(x, w, b, stride=stride, d=float(d))
    assert out.shape == F.conv2d(x, w, b, stride, 1).shape  # the undilated layer's size
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def _bilinear_half_pixel(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Hand-written bilinear resize, align_corners=False (half-pixel centres, edge clamp)."""
    in_h, in_w = img.shape

    def taps(n_out, n_in):
        scale = n_in / n_out
        rows = []
        for i in range(n_out):
            src = max((i + 0.5) * scale - 0.5, 0.0)
            lo = min(int(math.floor(src)), n_in - 1)
            hi = min(lo + 1, n_in - 1)
            a = src - lo
            rows.append((lo, hi, a))
        return rows

    out = np.zeros((out_h, out_w))
    for i, (y0, y1, ay) in enumerate(taps(out_h, in_h)):
        for j, (x0, x1, ax) in enumerate(taps(out_w, in_w)):
            top = img[y0, x0] * (1 - ax) + img[y0, x1] * ax
            bot = img[y1, x0] * (1 - ax) + img[y1, x1] * ax
            out[i, j] = top * (1 - ay) + bot * ay
    return out


def _dilated_conv_loops(img: np.ndarray, k: np.ndarray, d) -> np.ndarray:
    """Zero-padded 'same' cross-correlation with dilation d (or (dh, dw)), written as loops."""
    dh, dw = d if isinstance(d, tuple) else (d, d)
    h, w = img.shape
    out = np.zeros_like(img)
    for y in range(h):
        for x in range(w):
            acc = 0.0
            for ky in range(3):
                for kx in range(3):
                    sy, sx = y + (ky - 1) * dh, x + (kx - 1) * dw
                    if 0 <= sy < h and 0 <= sx < w:
                        acc += k[ky, kx] * img[sy, sx]
            out[y, x] = acc
    return out


@pytest.mark.parametrize("d,size", [(1.5, (7, 9)), (2.5, (10, 10)), (1.25, (8, 5))])
def test_fractional_dilation_matches_hand_computed_reference(d, size):
    rng = np.random.default_rng(0)
    img, k = rng.standard_normal(size), rng.standard_normal((3, 3))
    d_int = math.ceil(d)
    f = d_int / d
    big = _bilinear_half_pixel(img, round(f * size[0]), round(f * size[1]))
    ref = _bilinear_half_pixel(_dilated_conv_loops(big, k, d_int), *size)
    x = torch.tensor(img, dtype=torch.float64)[None, None]
    w = torch.tensor(k, dtype=torch.float64)[None, None]
    out = _conv(x, w, None, d=d)[0, 0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-10)


def test_split_dilation():
    assert split_dilation(2.5) == (3, 1.2)
    assert split_dilation(1.5) == (2, 2 / 1.5)
    assert split_dilation(2.0) == (2, 1.0)
    with pytest.raises(ValueError):
        split_dilation(0.5)


@pytest.mark.parametrize("d", [1.5, 2.0, 2.5, 3.0, 4.0])
def test_stride_two_keeps_the_undilated_size_for_every_size(d):
    w = torch.randn(2, 2, 3, 3)
    for h in range(3, 20):
        x = torch.randn(1, 2, h, h + 1)
        out = _conv(x, w, None, stride=2, d=d)
        assert out.shape[-2:] == (conv_output_size(h, 3, 2, 1), conv_output_size(h + 1, 3, 2, 1))
        assert out.shape[-2] == math.ceil(h / 2)


def test_conv3d_spatial_kernel_is_dilated_per_frame_only():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 5, 12, 13)  # b c f h w
    w3 = torch.randn(4, 3, 1, 3, 3)
    out = redilated_conv(x, w3, None, stride=(1, 1, 1), padding=(0, 1, 1), groups=1, dilation=2.0)
    per_frame = torch.stack([F.conv2d(x[:, :, i], w3[:, :, 0], None, 1, 2, 2) for i in range(5)], dim=2)
    torch.testing.assert_close(out, per_frame, rtol=0, atol=1e-5)
    # (3, 3, 3) kernels: time keeps its own padding/dilation, space is dilated.
    w = torch.randn(4, 3, 3, 3, 3)
    out = redilated_conv(x, w, None, stride=(1, 1, 1), padding=(1, 1, 1), groups=1, dilation=3.0)
    torch.testing.assert_close(out, F.conv3d(x, w, None, 1, (1, 3, 3), (1, 3, 3)), rtol=0, atol=1e-5)
    frac = redilated_conv(x, w3, None, stride=(1, 2, 2), padding=(0, 1, 1), groups=1, dilation=2.5)
    assert frac.shape == (2, 4, 5, 6, 7)


# ----------------------------------------------------------------------------- dispersion
def test_default_transform_reproduces_the_official_r20to1_new():
    r = dispersion_transform()
    assert r.shape == (25, 9)
    sums = r.sum(axis=0).reshape(3, 3)
    np.testing.assert_allclose(sums[[0, 0, 2, 2], [0, 2, 0, 2]], 1.127, atol=5e-4)
    np.testing.assert_allclose(sums[[0, 1, 1, 2], [1, 0, 2, 1]], 1.061, atol=5e-4)
    assert sums[1, 1] == pytest.approx(1.0, abs=1e-9)
    centre = r[:, 4].reshape(5, 5)  # the centre tap maps exactly onto the 5x5 centre
    expected = np.zeros((5, 5))
    expected[2, 2] = 1.0
    np.testing.assert_allclose(centre, expected, atol=1e-9)


def _residuals(b: np.ndarray, a: np.ndarray, n: int, scale: int):
    s, s_a, p, p_a = calibration_systems(3, 5, n, scale)
    return np.linalg.norm(s @ b - s_a @ a), np.linalg.norm(p @ b - p_a @ a)


def test_structure_level_calibration():
    """conv_b(U x) ~ U conv_a(x): the dispersed kernel beats both naive 5x5 embeddings, and the
    least-squares optimality conditions (normal equations) hold."""
    rng = np.random.default_rng(3)
    n, scale, eta = 3, 2, 0.05
    r = dispersion_transform(3, 5, n, scale, eta)
    for _ in range(5):
        a = rng.standard_normal(9)
        b = r @ a
        centred = np.zeros((5, 5))
        centred[1:4, 1:4] = a.reshape(3, 3)
        zero_stuffed = np.zeros((5, 5))
        zero_stuffed[::2, ::2] = a.reshape(3, 3)
        s_err, _ = _residuals(b, a, n, scale)
        assert s_err < _residuals(centred.ravel(), a, n, scale)[0]
        assert s_err < _residuals(zero_stuffed.ravel(), a, n, scale)[0]
        s, s_a, p, p_a = calibration_systems(3, 5, n, scale)
        big_a, big_c = np.concatenate([s, eta * p]), np.concatenate([s_a, eta * p_a]) @ a
        np.testing.assert_allclose(big_a.T @ (big_a @ b - big_c), 0, atol=1e-9)


def test_pixel_level_calibration():
    """conv_b(x) ~ conv_a(x): raising eta trades structure error for pixel error, and with a large
    eta the dispersed kernel acts on the original map like the small one."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal(9)
    errs = []
    for eta in (0.0, 0.05, 0.5, 50.0):
        errs.append(_residuals(dispersion_transform(3, 5, 3, 2, eta) @ a, a, 3, 2))
    pixel = [e[1] for e in errs]
    structure = [e[0] for e in errs]
    assert all(x >= y - 1e-12 for x, y in zip(pixel, pixel[1:]))
    assert all(x <= y + 1e-12 for x, y in zip(structure, structure[1:]))
    assert pixel[-1] < 1e-2 * np.linalg.norm(a) and pixel[-1] < 0.05 * pixel[0]


def test_disperse_weight_applies_the_transform_per_kernel():
    r = dispersion_transform()
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    big = disperse_weight(w, r)
    assert big.shape == (4, 3, 5, 5)
    np.testing.assert_allclose(big[1, 2].reshape(-1).numpy(), r @ w[1, 2].reshape(-1).numpy(), atol=1e-12)
    w3 = torch.randn(2, 2, 1, 3, 3)
    assert disperse_weight(w3, r).shape == (2, 2, 1, 5, 5)


def test_bilinear_upsample_matrix_is_align_corners():
    u = bilinear_upsample_matrix(3, 2)
    np.testing.assert_allclose(u @ np.array([0.0, 2.0, 4.0]), [0, 1, 2, 3, 4])


def test_entropy_scale_paper_example():
    # 512 -> 1024 at the 64^2 level: N = 16384, N_train = 4096.
    assert entropy_scale(16384, 4.0) == pytest.approx(math.sqrt(14 / 12))
    assert entropy_scale(4096, 1.0) == 1.0


# ------------------------------------------------------------------ per-axis factors
@pytest.mark.parametrize("d", [(1, 3), (2, 1), (3, 2)])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(16, 16), (17, 23), (9, 31)])
def test_per_axis_integer_dilation_equals_conv2d_with_dh_dw(d, stride, size):
    torch.manual_seed(2)
    x, w, b = torch.randn(1, 2, *size), torch.randn(3, 2, 3, 3), torch.randn(3)
    ref = F.conv2d(x, w, b, stride, d, d)  # padding (dh, dw), dilation (dh, dw)
    out = _conv(x, w, b, stride=stride, d=tuple(float(v) for v in d))
    assert out.shape == F.conv2d(x, w, b, stride, 1).shape
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_per_axis_conv3d_keeps_the_frame_axis():
    torch.manual_seed(3)
    x, w = torch.randn(1, 2, 3, 10, 12), torch.randn(4, 2, 1, 3, 3)
    out = redilated_conv(x, w, None, stride=(1, 1, 1), padding=(0, 1, 1), groups=1, dilation=(1.0, 3.0))
    torch.testing.assert_close(out, F.conv3d(x, w, None, 1, (0, 1, 3), (1, 1, 3)), rtol=0, atol=1e-6)


@pytest.mark.parametrize("d,size", [((1.0, 2.5), (7, 9)), ((1.5, 3.0), (10, 8)), ((2.5, 1.25), (9, 6))])
def test_per_axis_fractional_dilation_matches_hand_computed_reference(d, size):
    rng = np.random.default_rng(1)
    img, k = rng.standard_normal(size), rng.standard_normal((3, 3))
    ints = tuple(math.ceil(v) for v in d)
    f = tuple(i / v for i, v in zip(ints, d))
    big = _bilinear_half_pixel(img, round(f[0] * size[0]), round(f[1] * size[1]))
    ref = _bilinear_half_pixel(_dilated_conv_loops(big, k, ints), *size)
    x = torch.tensor(img, dtype=torch.float64)[None, None]
    w = torch.tensor(k, dtype=torch.float64)[None, None]
    out = _conv(x, w, None, d=d)[0, 0].numpy()
    np.testing.assert_allclose(out, ref, atol=1e-10)


def test_dispersed_weight_is_differentiable_after_a_call_under_inference_mode():
    """The transform's torch copy is cached per dtype/device: made first under inference mode (an
    inference-mode benchmark, say), it must still serve a later call that autograd records."""
    transform = dispersion_transform(3, 7, 3, 2, 0.05)  # a transform no other test caches
    with torch.inference_mode():
        disperse_weight(torch.randn(2, 2, 3, 3, dtype=torch.float64), transform)
    weight = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    disperse_weight(weight, transform).sum().backward()
    assert weight.grad is not None and weight.grad.shape == weight.shape
