"""Frame export: formats round-trip, odd sizes, atomic writes, side-by-side grids."""

import os

import numpy as np
import pytest
from PIL import Image

from scalecrafter_video import ScaleCrafterError
from scalecrafter_video import export as export_mod
from scalecrafter_video.export import check_output_path, is_own_output, side_by_side, write_video
from scalecrafter_video.video_io import read_video


def _frames(f=5, h=24, w=32, seed=0):
    """Smooth moving gradients (codec-friendly) so lossy formats can be checked closely."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = []
    for i in range(f):
        base = np.stack([(xx * 255 // max(w - 1, 1) + 10 * i) % 256, yy * 255 // max(h - 1, 1),
                         np.full_like(xx, 60 + 20 * (i % 5))], -1)
        out.append(base)
    return np.clip(np.asarray(out) + rng.integers(-2, 3, (f, h, w, 3)), 0, 255).astype(np.uint8)


def _read(path):
    if path.suffix == ".png":
        return np.asarray(Image.open(path).convert("RGB"))[None]
    return read_video(path)


@pytest.mark.parametrize("name,tol", [("v.mp4", 12.0), ("v.gif", 20.0), ("v.webp", 0.0), ("frames", 0.0)])
def test_round_trip(tmp_path, name, tol):
    frames = _frames()
    path = write_video(frames, tmp_path / name, fps=8)
    back = _read(path)
    assert back.shape[0] == frames.shape[0]
    assert back.shape[1:3] == frames.shape[1:3]
    err = np.abs(back.astype(float) - frames.astype(float)).mean()
    assert err <= tol, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary leftovers


def test_mp4_odd_sizes_are_padded_not_resized(tmp_path):
    frames = _frames(h=21, w=33)
    back = _read(write_video(frames, tmp_path / "odd.mp4"))
    assert back.shape[1:3] == (22, 34)
    assert np.abs(back[:, :21, :33].astype(float) - frames).mean() < 12


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    write_video(_frames(), tmp_path / "keep.mp4")
    before = (tmp_path / "keep.mp4").read_bytes()

    def boom(*a, **k):
        raise RuntimeError("encoder died")

    monkeypatch.setattr(export_mod, "_write_mp4", boom)
    with pytest.raises(RuntimeError):
        write_video(_frames(seed=1), tmp_path / "keep.mp4", overwrite=True)
    with pytest.raises(RuntimeError):
        write_video(_frames(seed=1), tmp_path / "new.mp4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.mp4"]
    assert (tmp_path / "keep.mp4").read_bytes() == before


def test_frame_folder_is_replaced_atomically(tmp_path):
    write_video(_frames(f=4), tmp_path / "out")
    write_video(_frames(f=2), tmp_path / "out", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["frame_00000.png", "frame_00001.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_bad_frames_are_clear_errors(tmp_path):
    with pytest.raises(ScaleCrafterError, match="uint8"):
        write_video(np.zeros((2, 8, 8, 3), np.float32), tmp_path / "a.mp4")
    with pytest.raises(ScaleCrafterError, match="shape"):
        write_video(np.zeros((2, 8, 8), np.uint8)[..., None].repeat(4, -1), tmp_path / "a.mp4")
    folder = write_video(_frames(f=3), tmp_path / "a.png")  # several frames: a folder, as for any other path
    assert folder.is_dir() and len(list(folder.glob("frame_*.png"))) == 3


def test_single_image(tmp_path):
    frame = _frames(f=1)
    back = _read(write_video(frame, tmp_path / "img.png"))
    assert np.array_equal(back, frame)


def test_side_by_side_labels_and_layout():
    a, b = _frames(h=24, w=32), _frames(h=16, w=20, seed=2)
    grid = side_by_side([a, b], labels=["Direct-Inf", "ScaleCrafter"], gap=4)
    strip = grid.shape[1] - 24
    assert grid.shape == (5, 24 + strip, 32 + 4 + 20, 3) and strip >= 12
    assert np.array_equal(grid[:, strip:, :32], a)
    assert np.array_equal(grid[:, strip + 4 : strip + 20, 36:], b)
    assert grid[:, :strip, :32].std() > 0  # text was drawn
    with pytest.raises(ScaleCrafterError, match="same number of frames"):
        side_by_side([a, _frames(f=2)])


# ------------------------------------------------------------------ nothing the tool did not write is lost
def _tree(root):
    return sorted((str(p.relative_to(root)), p.read_bytes() if p.is_file() else None) for p in root.rglob("*"))


def test_existing_target_is_refused_without_overwrite(tmp_path):
    write_video(_frames(), tmp_path / "v.mp4")
    before = _tree(tmp_path)
    with pytest.raises(ScaleCrafterError, match="--overwrite"):
        write_video(_frames(seed=1), tmp_path / "v.mp4")
    assert _tree(tmp_path) == before


def test_foreign_folder_is_never_replaced(tmp_path):
    mine = tmp_path / "mydir"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.tex").write_text("chapter 1")
    (mine / "sub" / "data.csv").write_text("1,2")
    before = _tree(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(ScaleCrafterError):
            write_video(_frames(), mine, overwrite=overwrite)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("make", ["file", "symlink", "fifo", "mp4-named-text"])
def test_foreign_targets_are_refused_even_with_overwrite(tmp_path, make):
    target = tmp_path / ("notes.mp4" if make == "mp4-named-text" else "out")
    if make == "file":
        target.write_text("keep me")
    elif make == "mp4-named-text":
        target.write_text("not a video")
    elif make == "symlink":
        (tmp_path / "real.txt").write_text("keep me")
        target.symlink_to(tmp_path / "real.txt")
    else:
        os.mkfifo(target)
    before = _tree(tmp_path) if make != "fifo" else None
    with pytest.raises(ScaleCrafterError, match="refusing"):
        write_video(_frames(), target, overwrite=True)
    if before is not None:
        assert _tree(tmp_path) == before
    else:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_device_node_is_refused(tmp_path):
    with pytest.raises(ScaleCrafterError, match="device"):
        write_video(_frames(), "/dev/null", overwrite=True)
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_own_outputs_are_replaced_with_overwrite(tmp_path):
    write_video(_frames(f=3), tmp_path / "a.gif")
    write_video(_frames(f=2), tmp_path / "a.gif", overwrite=True)
    assert _read(tmp_path / "a.gif").shape[0] == 2
    write_video(_frames(f=1), tmp_path / "img.png")
    write_video(_frames(f=1, seed=3), tmp_path / "img.png", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "img.png"]


@pytest.mark.parametrize("bad", ["", ".", "x" * 300 + ".mp4"])
def test_bad_output_names(tmp_path, bad):
    with pytest.raises(ScaleCrafterError):
        check_output_path(bad if bad in ("", ".") else tmp_path / bad)


def test_parent_that_is_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ScaleCrafterError, match="is a file"):
        check_output_path(tmp_path / "f" / "v.mp4")
    assert (tmp_path / "f").read_text() == "x"


def test_is_own_output(tmp_path):
    write_video(_frames(f=2), tmp_path / "frames")
    assert is_own_output(tmp_path / "frames")
    (tmp_path / "frames" / "notes.txt").write_text("x")
    assert not is_own_output(tmp_path / "frames")
