"""The FVD loader: decoding and the resize on worker threads, ahead of the network, bounded.

The threaded path must give the features of the sequential one bitwise, keep at most
``prefetch`` batches prepared ahead of the network, report bad files as before and leave no
thread running, whatever fails.
"""

import threading
import time

import numpy as np
import pytest

from scalecrafter_video.cli import main
from scalecrafter_video.metrics import i3d_features, load_i3d
from scalecrafter_video.metrics import features as features_mod
from scalecrafter_video.metrics.features import embed_video_sets, embed_videos
from scalecrafter_video.metrics.inputs import BadVideosError
from scalecrafter_video.metrics.loader import THREAD_NAME_PREFIX, BatchPrefetcher, one_openmp_thread_here

T = 9


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_i3d_weights):
    return tiny_i3d_weights(tmp_path_factory.mktemp("w") / "tiny.safetensors", divisor=16, seed=3)


@pytest.fixture(scope="module")
def model(weights):
    return load_i3d(weights=weights)


@pytest.fixture(scope="module")
def mp4_folder(tmp_path_factory, videos):
    """Seven mp4 files of three sizes (so batches mix sizes)."""
    folder = tmp_path_factory.mktemp("mp4s")
    sizes = [(32, 32), (48, 64), (40, 24)]
    for i in range(7):
        h, w = sizes[i % 3]
        videos.write_mp4(folder / f"v{i}.mp4", videos.random(1, 10, h, w, seed=40 + i)[0])
    return folder


def _loader_threads():
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME_PREFIX)]


@pytest.fixture(autouse=True)
def no_loader_threads_left():
    assert not _loader_threads()
    yield
    assert not _loader_threads(), "a loader thread outlived its call"


@pytest.mark.parametrize("workers,prefetch,batch_size", [(1, 1, 2), (3, 2, 3), (4, 1, 1), (2, 4, 16)])
def test_threaded_features_equal_the_sequential_ones(mp4_folder, model, workers, prefetch, batch_size):
    seq = embed_videos(mp4_folder, model, num_frames=T, batch_size=batch_size, workers=0)
    thr = embed_videos(mp4_folder, model, num_frames=T, batch_size=batch_size, workers=workers, prefetch=prefetch)
    np.testing.assert_array_equal(thr.features, seq.features)
    assert thr.names == seq.names and thr.source_sizes == seq.source_sizes and thr.shard_size == seq.shard_size == 7


def test_loader_features_are_the_batched_preprocessing_path(mp4_folder, model):
    """Clips resized one by one on workers and stacked give what preprocess_videos gives on the batch."""
    from scalecrafter_video.video_io import read_video

    clips = [read_video(p, max_frames=T) for p in sorted(mp4_folder.glob("*.mp4"), key=lambda p: int(p.stem[1:]))]
    ref = np.concatenate([i3d_features(clips[s:s + 3], model=model) for s in range(0, 7, 3)])
    got = embed_videos(mp4_folder, model, num_frames=T, batch_size=3, workers=2)
    np.testing.assert_array_equal(got.features, ref)


def test_cache_hits_and_stores_through_the_loader(tmp_path, mp4_folder, model):
    cache = tmp_path / "cache"
    first = embed_videos(mp4_folder, model, num_frames=T, batch_size=3, cache_dir=cache, workers=3)
    assert first.cache_hits == 0 and len(list(cache.rglob("*.npz"))) == 7
    second = embed_videos(mp4_folder, model, num_frames=T, batch_size=3, cache_dir=cache, workers=3)
    assert second.cache_hits == 7
    np.testing.assert_array_equal(second.features, first.features)
    assert second.source_sizes == first.source_sizes


def test_at_most_prefetch_batches_are_decoded_ahead_of_the_network(mp4_folder, model, monkeypatch):
    batch_size, prefetch = 2, 1
    decoded = []
    lock = threading.Lock()
    real_sample = features_mod.sample_clip

    def counting_sample(video, num_frames, stride=1):
        with lock:
            decoded.append(threading.current_thread().name)
        return real_sample(video, num_frames, stride)

    real_forward = features_mod._forward
    seen_at_forward = []

    def slow_forward(m, x):
        time.sleep(0.3)  # a slow network: the workers have all the time they want to run ahead
        with lock:
            seen_at_forward.append(len(decoded))
        return real_forward(m, x)

    monkeypatch.setattr(features_mod, "sample_clip", counting_sample)
    monkeypatch.setattr(features_mod, "_forward", slow_forward)
    fs = embed_videos(mp4_folder, model, num_frames=T, batch_size=batch_size, workers=4, prefetch=prefetch)
    assert len(fs.features) == 7 and len(seen_at_forward) == 4
    for k, n in enumerate(seen_at_forward):
        # while batch k is in the network, batches k+1 .. k+prefetch may be decoded, no more
        assert n <= min(7, (k + 1 + prefetch) * batch_size), (k, n, seen_at_forward)
    # ... and they are: decoding really runs ahead (on worker threads), it is not sequential
    assert any(n > (k + 1) * batch_size for k, n in enumerate(seen_at_forward[:-1])), seen_at_forward
    assert all(name.startswith(THREAD_NAME_PREFIX) for name in decoded)


def test_prefetcher_bound_and_order_with_uneven_workers():
    """The generic loader: items come back in order; at most prefetch batches run ahead."""
    batches = [list(range(s, s + 3)) for s in range(0, 30, 3)]
    started = []
    lock = threading.Lock()
    released = [0]  # batches the consumer is done with

    def prepare(i):
        with lock:
            started.append(i)
            # the consumer holds at most one batch; at most `prefetch` (2) more are prepared
            assert i // 3 <= released[0] + 2, (i, released[0])
        time.sleep(0.002 * ((i * 7) % 5))  # finish out of order
        return i * i

    with BatchPrefetcher(batches, prepare, workers=5, prefetch=2) as loader:
        out = []
        for k, (batch, results) in enumerate(loader):
            assert batch == batches[k] and results == [i * i for i in batch]
            out.extend(results)
            time.sleep(0.01)
            with lock:
                released[0] = k + 1
    assert out == [i * i for i in range(30)]
    assert sorted(started) == list(range(30))


def test_a_corrupt_file_is_reported_as_before(tmp_path, mp4_folder, model, videos):
    folder = tmp_path / "set"
    folder.mkdir()
    for p in sorted(mp4_folder.glob("*.mp4"))[:4]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "v2.mp4").write_bytes(b"\x00" * 64)  # corrupt, in the middle of a batch
    videos.write_mp4(folder / "v5.mp4", videos.random(1, 4, 32, 32)[0])  # too short
    messages = []
    for workers in (0, 3):
        with pytest.raises(BadVideosError) as err:
            embed_videos(folder, model, num_frames=T, batch_size=2, workers=workers)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "v2.mp4" in messages[1] and "v5.mp4" in messages[1] and "2 of 5" in messages[1]
    seq = embed_videos(folder, model, num_frames=T, batch_size=2, workers=0, skip_bad=True)
    thr = embed_videos(folder, model, num_frames=T, batch_size=2, workers=3, skip_bad=True)
    np.testing.assert_array_equal(thr.features, seq.features)
    assert thr.bad == seq.bad and [b[0].rsplit("/", 1)[-1] for b in thr.bad] == ["v2.mp4", "v5.mp4"]


def test_an_unexpected_worker_error_propagates_and_stops_every_thread(mp4_folder, model, monkeypatch):
    real_sample = features_mod.sample_clip
    calls = []

    def failing_sample(video, num_frames, stride=1):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("decoder blew up")
        time.sleep(0.05)
        return real_sample(video, num_frames, stride)

    monkeypatch.setattr(features_mod, "sample_clip", failing_sample)
    with pytest.raises(RuntimeError, match="decoder blew up"):
        embed_videos(mp4_folder, model, num_frames=T, batch_size=2, workers=3, prefetch=1)
    assert not _loader_threads()
    assert len(calls) < 7  # the batches not yet started were cancelled


def test_a_network_error_stops_the_loader(mp4_folder, model, monkeypatch):
    def broken_forward(m, x):
        raise MemoryError("out of memory in the network")

    monkeypatch.setattr(features_mod, "_forward", broken_forward)
    with pytest.raises(MemoryError):
        embed_videos(mp4_folder, model, num_frames=T, batch_size=2, workers=3, prefetch=2)
    assert not _loader_threads()


def test_cli_workers_and_prefetch_give_the_same_result(tmp_path, mp4_folder, weights, capsys, videos):
    np.save(tmp_path / "real.npy", videos.random(5, 10, 32, 32, seed=60))
    outputs = []
    for extra in (["--workers", "0"], ["--workers", "3", "--prefetch", "1"]):
        code = main(["fvd", str(tmp_path / "real.npy"), str(mp4_folder), "--num-frames", "9", "--batch-size", "2",
                     "--i3d-weights", str(weights), "--no-cache", "--no-progress", *extra])
        assert code == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and "FVD_9:" in outputs[0]


def test_two_sets_share_one_loader_and_give_the_separate_features(tmp_path, mp4_folder, model, videos):
    real = videos.random(5, 10, 32, 32, seed=70)
    both = embed_video_sets([real, mp4_folder], model, labels=["real", "fake"], num_frames=T, batch_size=3, workers=3)
    for got, src, label in zip(both, (real, mp4_folder), ("real", "fake")):
        ref = embed_videos(src, model, num_frames=T, batch_size=3, workers=0, label=label)
        np.testing.assert_array_equal(got.features, ref.features)
        assert got.names == ref.names and got.shard_size == ref.shard_size


def test_the_first_set_with_bad_files_is_the_one_reported(tmp_path, mp4_folder, model, videos):
    real = tmp_path / "real"
    real.mkdir()
    for p in sorted(mp4_folder.glob("*.mp4"))[:3]:
        (real / p.name).write_bytes(p.read_bytes())
    (real / "r_bad.mp4").write_bytes(b"\x00" * 64)
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "f_bad.mp4").write_bytes(b"\x01" * 64)
    videos.write_mp4(fake / "ok.mp4", videos.random(1, 10, 32, 32, seed=71)[0])
    with pytest.raises(BadVideosError) as alone:
        embed_videos(real, model, num_frames=T, batch_size=2, label="real", workers=0)
    with pytest.raises(BadVideosError) as err:
        embed_video_sets([real, fake], model, labels=["real", "fake"], num_frames=T, batch_size=2, workers=2)
    assert str(err.value) == str(alone.value) and "r_bad.mp4" in str(err.value) and "f_bad.mp4" not in str(err.value)
    with pytest.raises(BadVideosError, match="f_bad.mp4"):
        embed_video_sets([mp4_folder, fake], model, labels=["real", "fake"], num_frames=T, batch_size=2, workers=2)


def test_workers_run_torch_on_one_thread_and_leave_the_callers_setting_alone():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []

        def prepare(i):
            seen.append(torch.get_num_threads())
            return torch.arange(100000, dtype=torch.float32).mul(1.7).add(i)  # elementwise: thread-count free

        with BatchPrefetcher([[0, 1], [2, 3]], prepare, workers=2, prefetch=1) as loader:
            got = [r for _, rs in loader for r in rs]
        for i, g in enumerate(got):
            assert torch.equal(g, torch.arange(100000, dtype=torch.float32).mul(1.7).add(i))
        if "OpenMP" in torch.__config__.parallel_info():
            assert seen == [1, 1, 1, 1]
        assert torch.get_num_threads() == 2  # the caller's (the network's) threads are untouched
        box = []
        t = threading.Thread(target=lambda: box.append(torch.get_num_threads()))
        t.start()
        t.join()
        assert box == [2]  # nor torch's default for new threads
    finally:
        torch.set_num_threads(before)


def test_one_openmp_thread_here_only_touches_the_calling_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        box = []
        t = threading.Thread(target=lambda: box.append((one_openmp_thread_here(), torch.get_num_threads())))
        t.start()
        t.join()
        if box[0][0]:
            assert box[0][1] == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
