"""Reliability of ``scalecrafter-video render``: order of writes per item (output, sidecar, manifest
line), failing writes recorded without leftovers, one-line errors when the final files cannot be
written, resume that re-checks finished outputs, refused out-dirs, stale temporaries, a real full disk."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from scalecrafter_video import atomic, cli, export
from scalecrafter_video.batch import item_done, manifest, runner

ENOSPC = OSError(28, "No space left on device")


@pytest.fixture(scope="module")
def model(tiny_t2v_folder):
    return tiny_t2v_folder


def _args(prompts, out, model, *extra):
    return ["render", "--prompts", str(prompts), "--out-dir", str(out), "--model", str(model), "--steps", "2",
            "--no-progress", *extra]


def _prompts(tmp_path, *lines) -> Path:
    f = tmp_path / ("p.jsonl" if lines and lines[0].startswith("{") else "p.txt")
    f.write_text("".join(line + "\n" for line in lines))
    return f


def _manifest(out: Path) -> list[dict]:
    f = out / "manifest.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.is_file() else []


def _failures(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]


def _hidden(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("error:")]


def _assert_consistent(out: Path, fmt: str = "mp4") -> None:
    """Nothing half-done: every manifest line has its output (and sidecar), every output and sidecar
    has its manifest line, no hidden temporaries."""
    assert _hidden(out) == []
    listed = {r["path"] for r in _manifest(out)}
    outputs = {p.name for p in out.iterdir() if p.name.endswith(f".{fmt}")}
    sidecars = {p.name[: -len(".json")] for p in out.glob(f"*.{fmt}.json")}
    assert outputs == listed, (outputs, listed)
    if fmt != "npz":
        assert sidecars == listed, (sidecars, listed)
    for rel in listed:
        assert item_done(out, rel, next(r for r in _manifest(out) if r["path"] == rel))


# --------------------------------------------------------------------------- failing writes per item
def test_failing_video_write_leaves_no_sidecar_and_the_job_goes_on(tmp_path, model, capsys, monkeypatch):
    real, calls = export._write_mp4, []

    def full_disk_once(frames, path, fps, crf):
        calls.append(path)
        if len(calls) == 1:
            Path(path).write_bytes(b"\0" * 100)  # a half-written temporary
            raise OSError(28, "No space left on device")
        return real(frames, path, fps, crf)

    monkeypatch.setattr(export, "_write_mp4", full_disk_once)
    out = tmp_path / "out"
    assert cli.main(_args(_prompts(tmp_path, "first", "second"), out, model)) == 1
    captured = capsys.readouterr()
    assert "2 planned, 1 done, 0 skipped, 1 failed" in captured.out
    (failure,) = _failures(out)
    assert failure["path"] == "00000_first_scalecrafter_s0.mp4" and "No space left on device" in failure["reason"]
    assert not list(out.glob("00000_first*"))  # neither the video nor an orphan sidecar
    assert [r["path"] for r in _manifest(out)] == ["00001_second_scalecrafter_s0.mp4"]
    _assert_consistent(out)
    assert _error_lines(captured.err) == []


@pytest.mark.parametrize("stage", ["sidecar", "manifest line"])
def test_a_failing_sidecar_or_manifest_write_takes_the_video_with_it(tmp_path, model, capsys, monkeypatch, stage):
    if stage == "sidecar":
        real = atomic.write_text_atomic

        def failing(path, text):
            if path.name.endswith(".mp4.json"):
                raise ENOSPC
            return real(path, text)

        monkeypatch.setattr(atomic, "write_text_atomic", failing)
    else:
        monkeypatch.setattr(runner, "append_line", lambda path, entry: (_ for _ in ()).throw(ENOSPC))
    out = tmp_path / "out"
    assert cli.main(_args(_prompts(tmp_path, "a"), out, model)) == 1
    captured = capsys.readouterr()
    assert "1 planned, 0 done, 0 skipped, 1 failed" in captured.out
    assert "No space left on device" in _failures(out)[0]["reason"]
    assert not list(out.glob("00000_*")) and _manifest(out) == [] and _hidden(out) == []
    assert _error_lines(captured.err) == []


def test_append_cuts_a_torn_line_back(tmp_path, monkeypatch):
    f = tmp_path / "m.jsonl"
    f.write_text('{"path": "a"}\n')
    real = os.write
    monkeypatch.setattr(manifest.os, "write", lambda fd, data: real(fd, bytes(data[:5])) and (_ for _ in ()).throw(ENOSPC))
    with pytest.raises(OSError):
        manifest.append_line(f, {"path": "b"})
    monkeypatch.setattr(manifest.os, "write", real)
    assert f.read_text() == '{"path": "a"}\n'


# --------------------------------------------------------------------------- the final files
def test_failures_file_that_cannot_be_written_is_one_error_line(tmp_path, model, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "failures.jsonl").mkdir()  # the rename of the finished temporary onto it fails for real
    prompts = _prompts(tmp_path, '{"prompt": "fine"}', '{"prompt": "odd", "height": 15}')
    assert cli.main(_args(prompts, out, model, "--format", "npz")) == 1
    captured = capsys.readouterr()
    assert "2 planned, 1 done, 0 skipped, 1 failed" in captured.out
    errors = _error_lines(captured.err)
    assert len(errors) == 1 and errors[0].startswith("error: could not write failures.jsonl: "), captured.err
    assert _hidden(out) == []  # the temporary failures file was removed
    assert [r["path"] for r in _manifest(out)] == ["00000_fine_scalecrafter_s0.npz"]


def test_failures_file_on_a_full_disk_is_one_error_line(tmp_path, model, capsys, monkeypatch):
    real = atomic.write_text_atomic

    def failing(path, text):
        if path.name == "failures.jsonl":
            raise ENOSPC
        return real(path, text)

    monkeypatch.setattr(atomic, "write_text_atomic", failing)
    out = tmp_path / "out"
    assert cli.main(_args(_prompts(tmp_path, '{"prompt": "odd", "height": 15}'), out, model)) == 1
    errors = _error_lines(capsys.readouterr().err)
    assert errors == ["error: could not write failures.jsonl: No space left on device"]
    assert not (out / "failures.jsonl").exists() and _hidden(out) == []


def test_final_manifest_merge_failure_keeps_the_lines_for_the_next_run(tmp_path, model, capsys, monkeypatch):
    real, calls = manifest.merge_manifests, []

    def merge(out_dir, order=None):
        calls.append(order)
        if len(calls) == 2:  # the merge at the end of the run
            raise ENOSPC
        return real(out_dir, order)

    monkeypatch.setattr(runner, "merge_manifests", merge)
    out = tmp_path / "out"
    prompts = _prompts(tmp_path, "a")
    assert cli.main(_args(prompts, out, model, "--format", "npz")) == 1
    errors = _error_lines(capsys.readouterr().err)
    assert errors == ["error: could not write manifest.jsonl: No space left on device"]
    assert [r["path"] for r in _manifest(out)] == ["00000_a_scalecrafter_s0.npz"]  # the appended line stays
    monkeypatch.setattr(runner, "merge_manifests", real)
    assert cli.main(_args(prompts, out, model, "--format", "npz")) == 0
    assert "0 done, 1 skipped" in capsys.readouterr().out
    assert _hidden(out) == []


def test_real_merge_keeps_shards_when_the_manifest_cannot_be_written(tmp_path):
    (tmp_path / "manifest.rank0.jsonl").write_text('{"path": "a.npz"}\n')
    (tmp_path / "manifest.rank1.jsonl").write_text('{"path": "b.npz"}\n')
    (tmp_path / "manifest.jsonl").mkdir()  # cannot be replaced
    with pytest.raises(OSError):
        manifest.merge_manifests(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl", "manifest.rank0.jsonl", "manifest.rank1.jsonl"]


# --------------------------------------------------------------------------- resume
def test_truncated_outputs_are_rendered_again(tmp_path, model, capsys):
    out = tmp_path / "out"
    prompts = _prompts(tmp_path, "a", "b", "c")
    assert cli.main(_args(prompts, out, model)) == 0
    rows = {r["path"]: r for r in _manifest(out)}
    a, b, c = sorted(rows)
    assert all(item_done(out, p, rows[p]) for p in rows)
    intact = (out / c).read_bytes()
    with open(out / a, "r+b") as fh:  # truncated after the fact (the moov box at the end is gone)
        fh.truncate((out / a).stat().st_size // 2)
    (out / b).write_bytes(b"")  # truncated to nothing: not even recognisable as an mp4 any more
    assert not item_done(out, a, rows[a]) and not item_done(out, b, rows[b])
    capsys.readouterr()
    assert cli.main(_args(prompts, out, model)) == 0
    assert "3 planned, 2 done, 1 skipped, 0 failed" in capsys.readouterr().out
    from scalecrafter_video.video_io import read_video

    for p in (a, b):
        assert read_video(out / p).shape == (3, 16, 16, 3)
    assert (out / c).read_bytes() == intact
    assert len(_manifest(out)) == 3
    _assert_consistent(out)


def test_resume_checks_npz_and_png_outputs(tmp_path):
    frames = np.zeros((3, 4, 4, 3), np.uint8)
    np.savez_compressed(tmp_path / "x.npz", frames=frames, meta=np.array("{}"))
    assert item_done(tmp_path, "x.npz", {"frames": 3})
    assert not item_done(tmp_path, "x.npz", {"frames": 4})
    data = (tmp_path / "x.npz").read_bytes()
    (tmp_path / "x.npz").write_bytes(data[: len(data) - 30])
    assert not item_done(tmp_path, "x.npz", {"frames": 3})
    folder = tmp_path / "y"
    folder.mkdir()
    for i in range(3):
        (folder / f"frame_{i:05d}.png").write_bytes(b"\x89PNG")
    (folder / "notes.png").write_bytes(b"x")
    assert item_done(tmp_path, "y", {"frames": 3})
    (folder / "frame_00001.png").unlink()
    assert not item_done(tmp_path, "y", {"frames": 3})
    assert not item_done(tmp_path, "missing.mp4", {"frames": 3})


def test_a_changed_fps_is_refused_unless_overwrite(tmp_path, model, capsys):
    out = tmp_path / "out"
    prompts = _prompts(tmp_path, "a")
    assert cli.main(_args(prompts, out, model, "--format", "npz")) == 0
    (before,) = _manifest(out)
    capsys.readouterr()
    assert cli.main(_args(prompts, out, model, "--format", "npz", "--fps", "12")) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert _manifest(out) == [before]
    assert cli.main(_args(prompts, out, model, "--format", "npz", "--fps", "12", "--overwrite")) == 0
    assert "1 done, 0 skipped" in capsys.readouterr().out
    (after,) = _manifest(out)
    assert after["fps"] == 12 and after["config_hash"] != before["config_hash"]


# --------------------------------------------------------------------------- refused out-dirs
@pytest.fixture
def no_model_load(monkeypatch):
    from scalecrafter_video import pipelines

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the --out-dir check")

    monkeypatch.setattr(pipelines, "load_pipeline", refuse)


def _writable(folder: Path) -> bool:
    probe = folder / ".probe"
    try:
        probe.write_text("x")
    except OSError:
        return False
    probe.unlink()
    return True


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)  # busy: detach it anyway


def _mount(*args) -> str | None:
    """Run mount; the reason when it is not permitted, else None."""
    if shutil.which("mount") is None:
        return "no mount command"
    res = subprocess.run(["mount", *args], capture_output=True, text=True)
    return None if res.returncode == 0 else f"mount {' '.join(args)} failed: {res.stderr.strip() or res.returncode}"


def test_read_only_out_dir_is_one_error_line(tmp_path, model, capsys, no_model_load):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    mounted = False
    try:
        if _writable(ro):  # root ignores the mode bits; a read-only file system stops root too
            reason = _mount("-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(ro))
            if reason is not None:
                pytest.skip(f"chmod 0o555 does not stop writes here (running as root) and {reason}")
            mounted = True
            if _writable(ro):
                pytest.skip("writes to a chmod 0o555 folder and to a read-only tmpfs still succeed")
        prompts = _prompts(tmp_path, "a")
        for out in (ro, ro / "out", ro / "a" / "b"):
            assert cli.main(_args(prompts, out, model)) == 2
            errors = _error_lines(err := capsys.readouterr().err)
            assert len(errors) == 1 and len(err.splitlines()) == 1 and "not writable" in errors[0], err
        assert list(ro.iterdir()) == []
    finally:
        if mounted:
            _umount(ro)
        ro.chmod(0o755)


def test_out_dir_under_a_file_is_one_error_line(tmp_path, model, capsys, no_model_load):
    f = tmp_path / "file"
    f.write_text("x")
    prompts = _prompts(tmp_path, "a")
    for out, message in ((f, "is a file"), (f / "out", "is a file"), (f / "a" / "b", f"{f} is a file")):
        assert cli.main(_args(prompts, out, model)) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("error:") and message in err, err
    assert f.read_text() == "x"


# --------------------------------------------------------------------------- stale temporaries
def test_stale_temporaries_of_a_killed_run_are_swept(tmp_path, model, capsys):
    out = tmp_path / "out"
    out.mkdir()
    stale_files = [
        ".00000_a_scalecrafter_s0.k2j4h5g6.tmp.mp4",  # export.write_video: a video being written
        ".00000_a_scalecrafter_s0.mp4.json.4242.tmp",  # a sidecar being written
        ".manifest.jsonl.4242.tmp",
        ".00000_a_scalecrafter_s0.npz.4242.tmp.npz",
        ".00000_a_scalecrafter_s0.mp4.x1y2z3w4.old",  # atomic.atomic_path: a previous output swapped out
    ]
    for name in stale_files:
        (out / name).write_bytes(b"partial")
    for name in (".00001_b_scalecrafter_s0.a1b2c3d4.tmp", ".00001_b_scalecrafter_s0.e5f6g7h8.old"):
        (out / name).mkdir()  # png frame folders being written / swapped out
        (out / name / "frame_00000.png").write_bytes(b"partial")
    kept = [".keep-me", ".notes.old", ".cache.tmp", ".user.abcdefgh.tmp"]
    for name in kept[:3]:
        (out / name).write_text("a user's hidden file")
    (out / kept[3]).mkdir()  # named like a temporary folder, but holds a file we did not write
    (out / kept[3] / "notes.txt").write_text("mine")
    assert {p.name for p in manifest.stale_temporaries(out)} == set(stale_files) | {
        ".00001_b_scalecrafter_s0.a1b2c3d4.tmp", ".00001_b_scalecrafter_s0.e5f6g7h8.old"}
    assert cli.main(_args(_prompts(tmp_path, "a"), out, model)) == 0
    assert _hidden(out) == sorted(kept)
    assert (out / kept[3] / "notes.txt").read_text() == "mine"


# --------------------------------------------------------------------------- a real full disk
def test_a_real_full_disk(tmp_path, model, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    reason = _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk))
    if reason is not None:
        pytest.skip(f"cannot mount a small tmpfs: {reason}")
    try:
        out = disk / "out"
        out.mkdir()
        st = os.statvfs(disk)
        free = st.f_bavail * st.f_frsize
        (disk / "filler").write_bytes(b"\0" * max(free - 3 * 4096, 0))  # room for about one item
        prompts = _prompts(tmp_path, *[f"prompt {i}" for i in range(4)])
        rc = cli.main(_args(prompts, out, model))
        captured = capsys.readouterr()
        assert rc == 1, captured
        errors = _error_lines(captured.err)
        assert len(errors) <= 1
        if (out / "failures.jsonl").is_file():
            recorded = _failures(out)
            assert recorded and all("No space left on device" in f["reason"] for f in recorded)
        else:
            assert len(errors) == 1 and "No space left on device" in errors[0], captured
        assert "failed" in captured.out
        (out / "failures.jsonl").unlink(missing_ok=True)
        _assert_consistent(out)  # nothing partial: no temporaries, no sidecar without its video
        (disk / "filler").unlink()  # room again: the re-run finishes the job
        assert cli.main(_args(prompts, out, model)) == 0
        assert "4 planned" in capsys.readouterr().out
        assert len(_manifest(out)) == 4 and not (out / "failures.jsonl").exists()
        _assert_consistent(out)
    finally:
        _umount(disk)


def _open_files_under(folder: Path) -> list[str]:
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("no /proc/self/fd")
    found = []
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def test_a_failed_mp4_write_on_a_full_disk_releases_its_file(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    reason = _mount("-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk))
    if reason is not None:
        pytest.skip(f"cannot mount a small tmpfs: {reason}")
    try:
        st = os.statvfs(disk)
        (disk / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize))
        frames = np.random.default_rng(0).integers(0, 255, (3, 16, 16, 3), dtype=np.uint8)
        with pytest.raises(OSError):
            export.write_video(frames, disk / "x.mp4", fps=8)
        assert os.listdir(disk) == ["filler"]
        assert _open_files_under(disk) == []
    finally:
        _umount(disk)
