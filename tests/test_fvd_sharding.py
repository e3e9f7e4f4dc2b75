"""torchrun sharding on CPU (gloo, 2 processes) gives the features of a single-process run."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from scalecrafter_video.metrics import compute_fvd, load_i3d
from scalecrafter_video.metrics.features import embed_videos


ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed gloo missing")
def test_two_process_gloo_sharding_matches_single_process(tmp_path, videos, tiny_i3d_weights, subprocess_env):
    weights = tiny_i3d_weights(tmp_path / "tiny.safetensors", divisor=16, seed=4)
    real = tmp_path / "real.npy"
    np.save(real, videos.random(5, 10, 32, 32, seed=20))  # odd count: uneven shards
    fake = tmp_path / "fake"
    fake.mkdir()
    for i, v in enumerate(videos.random(4, 10, 32, 32, seed=21)):
        videos.write_mp4(fake / f"f{i}.mp4", v)
    (fake / "f4.mp4").write_bytes(b"\x00" * 32)  # bad video, in rank 0's shard (index 4)
    out = tmp_path / "out"
    out.mkdir()

    env = dict(subprocess_env, SCALECRAFTER_VIDEO_CACHE=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "_fvd_shard_worker.py"), str(real), str(fake), str(weights), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    model = load_i3d(weights=weights)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' setting: CPU conv results depend on the thread count
    try:
        single = embed_videos(real, model, num_frames=9, batch_size=2)
        fake_single = embed_videos(fake, model, num_frames=9, batch_size=2, skip_bad=True)
        ref = compute_fvd(real, fake, num_frames=9, batch_size=2, model=model, skip_bad=True, cache=False,
                          progress=False)
    finally:
        torch.set_num_threads(threads)
    metas = [json.loads((out / f"meta_rank{r}.json").read_text()) for r in (0, 1)]
    assert [m["shard_size"] for m in metas] == [3, 2]  # batches {0,1},{4} on rank 0, {2,3} on rank 1
    for r in (0, 1):
        np.testing.assert_array_equal(np.load(out / f"features_rank{r}.npy"), single.features)
        assert metas[r]["names"] == single.names

    np.testing.assert_array_equal(np.load(out / "fake_features_rank1.npy"), fake_single.features)
    assert (out / "cli_rank0.json").exists() and not (out / "cli_rank1.json").exists()  # rank 0 reports
    got = json.loads((out / "cli_rank0.json").read_text())
    assert got["protocol"]["world_size"] == 2
    # Same features; the float64 statistics agree up to BLAS threading in this process.
    assert got["fvd"] == pytest.approx(ref.fvd, rel=1e-9) and got["kvd"] == pytest.approx(ref.kvd, rel=1e-9)
    assert (got["num_real"], got["num_fake"]) == (5, 4)
    assert [s["name"].rsplit("/", 1)[-1] for s in got["skipped"]] == ["f4.mp4"]
    assert "skipped (fake)" in proc.stderr and proc.stdout.count("FVD_9:") == 1
