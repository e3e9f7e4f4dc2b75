"""compute_fvd end to end with a tiny random I3D: input kinds, clip rule, bad videos, cache, CLI."""

import json

import numpy as np
import pytest
import torch

from scalecrafter_video.cli import main
from scalecrafter_video.errors import ScaleCrafterError
from scalecrafter_video.metrics import compute_fvd, frechet_distance, i3d_features, kernel_distance, load_i3d
from scalecrafter_video.metrics.features import embed_videos
from scalecrafter_video.metrics.inputs import BadVideosError, VideoSet, sample_clip

T = 9


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_i3d_weights):
    return tiny_i3d_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors", divisor=16, seed=0)


@pytest.fixture(scope="module")
def model(weights):
    return load_i3d(weights=weights)


@pytest.fixture()
def cache_env(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALECRAFTER_VIDEO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_sample_clip_rule():
    v = np.arange(40).reshape(40, 1, 1, 1).repeat(3, -1).astype(np.uint8)
    assert sample_clip(v, 9)[:, 0, 0, 0].tolist() == list(range(9))
    assert sample_clip(v, 9, stride=4)[:, 0, 0, 0].tolist() == list(range(0, 33, 4))
    with pytest.raises(ScaleCrafterError, match="too short"):
        sample_clip(v, 9, stride=5)


def test_arrays_npy_npz_and_folders_give_the_same_features(tmp_path, model, videos):
    vids = videos.random(3, 12, 40, 56, seed=1)
    np.save(tmp_path / "v.npy", vids)
    np.savez(tmp_path / "v.npz", vids)
    gifs = tmp_path / "gifs"
    gifs.mkdir()
    frames = tmp_path / "frames"
    for i, v in enumerate(vids):
        videos.write_gif(gifs / f"clip{i}.gif", v)
        videos.write_frame_folder(frames / f"clip{i}", v)
    ref = i3d_features(vids[:, :T], model=model)
    for src in (vids, tmp_path / "v.npy", tmp_path / "v.npz", frames):
        fs = embed_videos(src, model, num_frames=T)
        np.testing.assert_array_equal(fs.features, ref)
    assert VideoSet(frames).items[2].name.endswith("clip2")
    assert [i.name.rsplit("/", 1)[-1] for i in VideoSet(gifs).items] == ["clip0.gif", "clip1.gif", "clip2.gif"]


def test_stride_and_max_videos(model, videos):
    vids = videos.random(4, 20, 32, 32, seed=2)
    fs = embed_videos(vids, model, num_frames=T, stride=2, max_videos=3)
    np.testing.assert_array_equal(fs.features, i3d_features(vids[:3, 0:17:2], model=model))
    assert len(fs.names) == 3


def test_mixed_sizes_and_natural_order(tmp_path, model, videos):
    folder = tmp_path / "mixed"
    folder.mkdir()
    a, b = videos.random(1, 10, 32, 48, seed=3)[0], videos.random(1, 10, 64, 64, seed=4)[0]
    videos.write_mp4(folder / "v10.mp4", a)
    videos.write_frame_folder(folder / "v2", b)
    (folder / "README.txt").write_text("not a video")
    vs = VideoSet(folder)
    assert [n.rsplit("/", 1)[-1] for n in (i.name for i in vs.items)] == ["v2", "v10.mp4"]
    assert vs.ignored[0].endswith("README.txt")
    fs = embed_videos(folder, model, num_frames=T)
    assert fs.source_sizes == [(32, 48), (64, 64)]


def _folder_with_bad_videos(tmp_path, videos):
    folder = tmp_path / "fake"
    folder.mkdir()
    for i, v in enumerate(videos.random(3, 10, 32, 32, seed=5)):
        videos.write_mp4(folder / f"ok{i}.mp4", v)
    (folder / "broken.mp4").write_bytes(b"\x00" * 64)
    videos.write_mp4(folder / "short.mp4", videos.random(1, 4, 32, 32)[0])
    return folder


def test_bad_videos_fail_by_default_naming_each_file(tmp_path, model, videos):
    folder = _folder_with_bad_videos(tmp_path, videos)
    with pytest.raises(BadVideosError) as err:
        embed_videos(folder, model, num_frames=T)
    msg = str(err.value)
    assert "broken.mp4" in msg and "short.mp4" in msg and "too short: 4 frames" in msg
    assert "2 of 5" in msg and "--skip-bad" in msg


def test_skip_bad_reports_and_leaves_them_out(tmp_path, model, cache_env, videos):
    folder = _folder_with_bad_videos(tmp_path, videos)
    real = videos.random(4, 10, 32, 32, seed=6)
    res = compute_fvd(real, folder, num_frames=T, model=model, skip_bad=True, progress=False)
    assert res.num_fake == 3 and res.num_real == 4
    assert sorted(s["name"].rsplit("/", 1)[-1] for s in res.skipped) == ["broken.mp4", "short.mp4"]


def test_compute_fvd_matches_the_pure_functions(model, cache_env, videos):
    real, fake = videos.random(5, 10, 32, 32, seed=7), videos.random(6, 10, 32, 32, seed=8)
    res = compute_fvd(real, fake, num_frames=T, model=model, kvd_subsets=3, kvd_subset_size=4, progress=False)
    fr, ff = i3d_features(real[:, :T], model=model), i3d_features(fake[:, :T], model=model)
    assert res.fvd == pytest.approx(frechet_distance(fr, ff), rel=1e-12)
    assert res.kvd == pytest.approx(kernel_distance(fr, ff), rel=1e-12)
    assert res.kvd_subsets_std is not None and res.kvd_subsets_std >= 0
    assert (res.num_real, res.num_fake, res.num_frames) == (5, 6, T)
    assert res.protocol["resize_method"] == "tf1_legacy" and res.protocol["name"] == "FVD_9"
    assert res.protocol["reference_weights"] is False


def test_feature_cache_is_keyed_by_content_and_protocol(tmp_path, model, cache_env, videos):
    folder = tmp_path / "set"
    folder.mkdir()
    vids = videos.random(3, 12, 32, 32, seed=9)
    for i, v in enumerate(vids):
        videos.write_frame_folder(folder / f"c{i}", v)
    cache = tmp_path / "feat-cache"
    first = embed_videos(folder, model, num_frames=T, cache_dir=cache)
    assert first.cache_hits == 0 and len(list(cache.rglob("*.npz"))) == 3
    second = embed_videos(folder, model, num_frames=T, cache_dir=cache)
    assert second.cache_hits == 3
    np.testing.assert_array_equal(first.features, second.features)
    # A changed frame invalidates only that video; other protocol settings miss entirely.
    videos.write_frame_folder(folder / "c1", videos.random(1, 12, 32, 32, seed=10)[0])
    third = embed_videos(folder, model, num_frames=T, cache_dir=cache)
    assert third.cache_hits == 2 and not np.array_equal(third.features[1], first.features[1])
    assert embed_videos(folder, model, num_frames=10, cache_dir=cache).cache_hits == 0
    assert embed_videos(folder, model, num_frames=T, resize_method="half_pixel", cache_dir=cache).cache_hits == 0


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p, videos: p / "missing", "does not exist"),
        (lambda p, videos: (p / "empty").mkdir() or p / "empty", "holds no videos"),
        (lambda p, videos: np.save(p / "f.npy", np.zeros((2, 10, 8, 8, 3), np.float32)) or p / "f.npy", "uint8"),
        (lambda p, videos: np.save(p / "s.npy", np.zeros((10, 8, 8, 3), np.uint8)) or p / "s.npy", r"\(N, T, H, W, 3\)"),
        (lambda p, videos: videos.write_frame_folder(p / "loose", videos.random(1, 3, 8, 8)[0]), "own sub-folder"),
    ],
)
def test_input_set_errors(tmp_path, model, make, match, videos):
    with pytest.raises(ScaleCrafterError, match=match):
        embed_videos(make(tmp_path, videos), model, num_frames=T)


def test_too_few_frames_is_a_clear_error(model, videos):
    with pytest.raises(ScaleCrafterError, match="at least 9"):
        embed_videos(videos.random(2, 8, 16, 16), model, num_frames=8)


def test_cli_prints_result_and_writes_json(tmp_path, weights, cache_env, capsys, videos):
    np.save(tmp_path / "real.npy", videos.random(4, 10, 32, 32, seed=11))
    np.save(tmp_path / "fake.npy", videos.random(4, 10, 32, 32, seed=12))
    out = tmp_path / "r.json"
    code = main(["fvd", str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"), "--num-frames", "9",
                 "--i3d-weights", str(weights), "--kvd-subsets", "2", "--json", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0
    assert "FVD_9:" in text and "KVD:" in text and "N: real 4, fake 4; T = 9" in text and "protocol:" in text
    data = json.loads(out.read_text())
    assert data["num_real"] == 4 and data["protocol"]["resize_method"] == "tf1_legacy"
    assert f"{data['fvd']:.4f}" in text


def test_cli_reports_user_errors_on_one_line(tmp_path, weights, capsys):
    code = main(["fvd", str(tmp_path / "nope"), str(tmp_path / "nope2"), "--i3d-weights", str(weights)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "does not exist" in err


@pytest.mark.parametrize("device,match", [("gpu", "unknown device"), ("cuda:0", "CUDA is not available")])
def test_bad_device_is_a_user_error(tmp_path, weights, device, match, videos):
    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ScaleCrafterError, match=match):
        compute_fvd(videos.random(2, 9, 8, 8), videos.random(2, 9, 8, 8), num_frames=9, weights=weights,
                    device=device, cache=False, progress=False)


def test_i3d_features_accepts_clip_lists_and_batches_consistently(model, videos):
    clips = [videos.random(1, 9, 24, 40, seed=30)[0], videos.random(1, 9, 56, 56, seed=31)[0]]
    f = i3d_features(clips, model=model, batch_size=1)
    assert f.shape == (2, 400) and f.dtype == np.float32
    np.testing.assert_allclose(i3d_features(clips, model=model, batch_size=2), f, rtol=0, atol=1e-5)
    with pytest.raises(ScaleCrafterError, match="no videos"):
        i3d_features([], model=model)
