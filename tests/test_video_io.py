"""read_video: mp4/webm/gif/webp files and png/jpg frame folders; errors name the file."""

import numpy as np
import pytest

from scalecrafter_video.errors import ScaleCrafterError
from scalecrafter_video.video_io import VideoReadError, natural_sort_key, read_video


@pytest.fixture(scope="module")
def clip(videos):
    return videos.random(1, 12, 48, 64, seed=3)[0]


@pytest.mark.parametrize("ext,codec", [("mp4", "libx264"), ("webm", "libvpx-vp9"), ("mp4", "mpeg4")])
def test_container_files(tmp_path, clip, ext, codec, videos):
    path = videos.write_mp4(tmp_path / f"v.{ext}", clip, codec=codec)
    frames = read_video(path)
    assert frames.shape == clip.shape and frames.dtype == np.uint8
    assert np.abs(frames.astype(int) - clip).mean() < 12  # lossy, but the same picture
    assert read_video(path, max_frames=5).shape == (5, 48, 64, 3)


def test_pyav_fallback_agrees_with_default_reader(tmp_path, clip, videos):
    path = videos.write_mp4(tmp_path / "v.mp4", clip)
    np.testing.assert_array_equal(read_video(path, backend="pyav"), read_video(path))


def test_gif_and_webp(tmp_path, videos):
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    for i in range(4):
        frames[i, :, :, i % 3] = 50 * (i + 1)  # few colours: palette-exact
    np.testing.assert_array_equal(read_video(videos.write_gif(tmp_path / "a.gif", frames)), frames)
    from PIL import Image

    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(tmp_path / "a.webp", save_all=True, append_images=ims[1:], lossless=True, duration=100)
    np.testing.assert_array_equal(read_video(tmp_path / "a.webp"), frames)


def test_frame_folder_natural_order_and_jpg(tmp_path, clip, videos):
    folder = videos.write_frame_folder(tmp_path / "v", clip, pattern="frame_{}")  # frame_0 ... frame_11
    got = read_video(folder)
    np.testing.assert_array_equal(got, clip)  # frame_10 after frame_9, not after frame_1
    assert read_video(folder, max_frames=3).shape[0] == 3
    jpg = videos.write_frame_folder(tmp_path / "j", clip[:3], ext="jpg")
    assert read_video(jpg).shape == (3, 48, 64, 3)


def test_natural_sort_key():
    names = ["f10.png", "f2.png", "f1.png", "F3.png"]
    assert sorted(names, key=natural_sort_key) == ["f1.png", "f2.png", "F3.png", "f10.png"]


def test_grayscale_and_rgba_frames_become_rgb(tmp_path):
    from PIL import Image

    folder = tmp_path / "g"
    folder.mkdir()
    Image.fromarray(np.full((8, 8), 77, np.uint8), mode="L").save(folder / "0.png")
    Image.fromarray(np.full((8, 8, 4), 99, np.uint8), mode="RGBA").save(folder / "1.png")
    got = read_video(folder)
    assert got.shape == (2, 8, 8, 3)
    assert np.all(got[0] == 77) and np.all(got[1] == 99)


def test_errors_name_the_file(tmp_path, clip, videos):
    with pytest.raises(VideoReadError, match="no such file"):
        read_video(tmp_path / "missing.mp4")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    with pytest.raises(VideoReadError, match="corrupt.mp4"):
        read_video(corrupt)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(VideoReadError, match="unsupported extension"):
        read_video(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoReadError, match="no .*frames"):
        read_video(tmp_path / "empty")
    mixed = videos.write_frame_folder(tmp_path / "mixed", clip[:2])
    videos.write_frame_folder(tmp_path / "mixed", videos.random(1, 1, 16, 16)[0], pattern="z{}")
    with pytest.raises(VideoReadError, match="different sizes"):
        read_video(mixed)
    broken_png = tmp_path / "bp"
    broken_png.mkdir()
    (broken_png / "0.png").write_bytes(b"not a png")
    with pytest.raises(VideoReadError, match="0.png"):
        read_video(broken_png)
    assert issubclass(VideoReadError, ScaleCrafterError)
