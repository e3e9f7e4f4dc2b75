"""Batch rendering: prompt files, planning, manifest, resume after SIGKILL, config refusal, failures,
and 2-process gloo sharding equal to a single-process run."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scalecrafter_video import cli, recipes
from scalecrafter_video.batch import (
    config_hash,
    item_done,
    plan_items,
    read_manifest,
    read_prompts,
    shard,
)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model(tiny_t2v_folder):
    return tiny_t2v_folder


def _manifest_lines(out: Path) -> list[dict]:
    f = out / "manifest.jsonl"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.is_file() else []


def _temporaries(out: Path) -> list[str]:
    return [p.name for p in out.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- prompt files
def test_text_prompt_file_skips_blank_lines_and_comments(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# a comment\na red ball\n\n  a blue cube  \n")
    entries = read_prompts(f)
    assert [(e.line, e.prompt) for e in entries] == [(2, "a red ball"), (4, "a blue cube")]


def test_jsonl_per_item_seed_and_size(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "a", "seed": 7, "height": 32}\n{"prompt": "b", "seeds": [1, 2], "frames": 5}\n{"prompt": "c"}\n')
    items = plan_items(read_prompts(f), ["direct", "scalecrafter"], [0, 3], {"height": 16, "width": 16, "frames": 3})
    got = [(i.entry, i.method, i.seed, i.height, i.width, i.frames) for i in items]
    assert got == [
        (0, "direct", 7, 32, 16, 3), (0, "scalecrafter", 7, 32, 16, 3),
        (1, "direct", 1, 16, 16, 5), (1, "direct", 2, 16, 16, 5),
        (1, "scalecrafter", 1, 16, 16, 5), (1, "scalecrafter", 2, 16, 16, 5),
        (2, "direct", 0, 16, 16, 3), (2, "direct", 3, 16, 16, 3),
        (2, "scalecrafter", 0, 16, 16, 3), (2, "scalecrafter", 3, 16, 16, 3),
    ]
    assert len({i.name for i in items}) == len(items)
    assert items[0].name == "00000_a_direct_s7"


def test_bad_prompt_lines_reported_with_line_numbers(tmp_path, model, capsys):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "ok"}\n{"prompt": "broken"\n\n{"seed": 1}\n{"prompt": "x", "height": -4}\n{"prompt": "y", "colour": 1}\n')
    rc = cli.main(["render", "--prompts", str(f), "--out-dir", str(tmp_path / "out"), "--model", str(model)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("error:")
    for expected in ("4 bad line(s)", "line 2: invalid JSON", "line 4: 'prompt'", "line 5: 'height'", "line 6: unknown key"):
        assert expected in err
    assert "line 1" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was loaded or written


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0,x"], "--seeds"),
    (["--method", "scalecrafter,bogus"], "unknown method"),
    (["--num-per-prompt", "0"], "--num-per-prompt"),
])
def test_bad_options_are_one_line_errors(tmp_path, model, capsys, argv, message):
    f = tmp_path / "p.txt"
    f.write_text("a\n")
    rc = cli.main(["render", "--prompts", str(f), "--out-dir", str(tmp_path / "o"), "--model", str(model), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1


# --------------------------------------------------------------------------- pure helpers
@pytest.mark.parametrize("n, world", [(0, 2), (1, 3), (7, 2), (10, 4), (5, 5)])
def test_shards_cover_every_item_once(n, world):
    items = list(range(n))
    parts = [shard(items, r, world) for r in range(world)]
    flat = [x for p in parts for x in p]
    assert sorted(flat) == items and len(flat) == n


def test_config_hash_is_stable_and_sensitive():
    a = config_hash({"x": 1, "y": [1, 2]}, method="direct", steps=4)
    assert a == config_hash({"y": [1, 2], "x": 1}, steps=4, method="direct")
    assert a != config_hash({"x": 1, "y": [1, 2]}, method="direct", steps=5)
    assert a != config_hash({"x": 2, "y": [1, 2]}, method="direct", steps=4)


def test_manifest_reader_ignores_torn_lines_and_merges_shards(tmp_path):
    (tmp_path / "manifest.jsonl").write_text('{"path": "a.mp4", "config_hash": "1"}\n{"path": "b.mp4", "conf')
    (tmp_path / "manifest.rank1.jsonl").write_text('{"path": "c.mp4", "config_hash": "1"}\n')
    assert sorted(read_manifest(tmp_path)) == ["a.mp4", "c.mp4"]
    (tmp_path / "a.mp4").write_bytes(b"x")
    assert item_done(tmp_path, "a.mp4", {"path": "a.mp4"})
    assert not item_done(tmp_path, "c.mp4", {"path": "c.mp4"})  # manifest line without its file
    assert not item_done(tmp_path, "a.mp4", None)  # file without its manifest line


# --------------------------------------------------------------------------- end to end
def _render_args(prompts, out, model, *extra):
    return ["render", "--prompts", str(prompts), "--out-dir", str(out), "--model", str(model), "--steps", "2",
            "--no-progress", *extra]


def test_manifest_keys_and_outputs(tmp_path, model, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red ball\n")
    out = tmp_path / "out"
    assert cli.main(_render_args(prompts, out, model, "--seeds", "3", "--method", "direct,scalecrafter",
                                 "--height", "32", "--width", "16")) == 0
    rows = _manifest_lines(out)
    assert [r["path"] for r in rows] == ["00000_a-red-ball_direct_s3.mp4", "00000_a-red-ball_scalecrafter_s3.mp4"]
    required = {"path", "prompt", "seed", "model", "config_hash", "method", "height", "width", "frames", "seconds"}
    for r in rows:
        assert required <= set(r)
        assert (r["height"], r["width"], r["frames"], r["seed"]) == (32, 16, 3, 3)
        assert (out / r["path"]).is_file()
        sidecar = json.loads((out / (r["path"] + ".json")).read_text())
        assert sidecar["config"]["method"] == r["method"] and sidecar["seed"] == 3 and "torch" in sidecar["versions"]
    assert rows[0]["config_hash"] != rows[1]["config_hash"]
    assert "2 planned, 2 done, 0 skipped, 0 failed" in capsys.readouterr().out
    assert _temporaries(out) == []


def test_tiled_decoding_option(tmp_path, model, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\n")
    plain, tiled = tmp_path / "plain", tmp_path / "tiled"
    size = ["--height", "32", "--width", "32", "--format", "npz"]
    assert cli.main(_render_args(prompts, plain, model, *size)) == 0
    assert cli.main(_render_args(prompts, tiled, model, *size, "--tile-size", "6")) == 0
    (a,), (b,) = _manifest_lines(plain), _manifest_lines(tiled)
    assert a["config_hash"] != b["config_hash"]  # tiling is part of the configuration
    x, y = np.load(plain / a["path"])["frames"], np.load(tiled / b["path"])["frames"]
    assert x.shape == y.shape == (3, 32, 32, 3) and not np.array_equal(x, y)
    assert cli.main(_render_args(prompts, tiled, model, *size, "--tile-size", "1")) == 2
    assert "--tile-size" in capsys.readouterr().err


def test_config_change_refused_unless_overwrite(tmp_path, model, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\n")
    out = tmp_path / "out"
    assert cli.main(_render_args(prompts, out, model, "--format", "npz")) == 0
    first = {r["path"]: r["config_hash"] for r in _manifest_lines(out)}
    capsys.readouterr()
    assert cli.main(_render_args(prompts, out, model, "--format", "npz")) == 0
    assert "0 done, 2 skipped" in capsys.readouterr().out
    # A line torn by a kill (no newline), then a run that appends: the new line must stay readable.
    with open(out / "manifest.jsonl", "a") as f:
        f.write('{"path": "00002_c_scalecrafter_s0.npz", "conf')
    prompts.write_text("a\nb\nc\n")
    assert cli.main(_render_args(prompts, out, model, "--format", "npz")) == 0
    assert "1 done, 2 skipped" in capsys.readouterr().out
    assert [r["path"] for r in _manifest_lines(out)][-1] == "00002_c_scalecrafter_s0.npz"
    prompts.write_text("a\nb\n")
    changed = _render_args(prompts, out, model, "--format", "npz", "--guidance", "3.0")
    assert cli.main(changed) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "--overwrite" in err
    before = {r["path"]: r["config_hash"] for r in _manifest_lines(out)}
    assert {p: before[p] for p in first} == first  # nothing touched
    assert cli.main(changed + ["--overwrite"]) == 0
    rows = _manifest_lines(out)
    assert len(rows) == 3 and len({r["path"] for r in rows}) == 3  # c (not planned now) is kept
    assert all(first[r["path"]] != r["config_hash"] for r in rows if r["path"] in first)


def test_failing_items_are_recorded_and_the_job_goes_on(tmp_path, model, capsys, monkeypatch):
    original = recipes.sample_video

    def poisoned(pipe, config, prompt, seed, **kw):  # NaN noise predictions for one prompt
        import torch

        handle = None
        if prompt == "poison":
            handle = pipe.unet.register_forward_hook(
                lambda m, a, o: type(o)(sample=torch.full_like(o.sample, float("nan"))))
        try:
            return original(pipe, config, prompt, seed, **kw)
        finally:
            if handle is not None:
                handle.remove()

    monkeypatch.setattr(recipes, "sample_video", poisoned)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "fine"}\n{"prompt": "poison"}\n{"prompt": "odd", "height": 15}\n{"prompt": "also fine"}\n')
    out = tmp_path / "out"
    assert cli.main(_render_args(prompts, out, model, "--format", "npz")) == 1
    summary = capsys.readouterr().out
    assert "4 planned, 2 done, 0 skipped, 2 failed" in summary
    assert "non-finite latents" in summary and "multiples of 2" in summary
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert sorted((f["line"], f["prompt"]) for f in failures) == [(2, "poison"), (3, "odd")]
    assert sorted(r["prompt"] for r in _manifest_lines(out)) == ["also fine", "fine"]
    assert not list(out.glob("00001_*")) and not list(out.glob("00002_*"))
    # A re-run retries only the failed items.
    monkeypatch.setattr(recipes, "sample_video", original)
    prompts.write_text('{"prompt": "fine"}\n{"prompt": "poison"}\n{"prompt": "odd", "height": 16}\n{"prompt": "also fine"}\n')
    assert cli.main(_render_args(prompts, out, model, "--format", "npz")) == 0
    assert "4 planned, 2 done, 2 skipped, 0 failed" in capsys.readouterr().out
    assert not (out / "failures.jsonl").exists()


def test_resume_after_sigkill_gives_exactly_the_planned_set(tmp_path, model, subprocess_env):
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"prompt number {i}\n" for i in range(4)))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "scalecrafter_video", *_render_args(prompts, out, model, "--steps", "4",
                                                                     "--num-per-prompt", "2", "--height", "32", "--width", "32")]
    proc = subprocess.Popen(cmd, env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None and len(_manifest_lines(out)) < 1:
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    partial = _manifest_lines(out)
    assert 1 <= len(partial) < 8, "the job must be killed in the middle"
    for r in partial:  # no manifest line without its complete file
        assert (out / r["path"]).is_file()
    outputs = sorted(p.name for p in out.glob("*.mp4"))
    assert set(r["path"] for r in partial) <= set(outputs)

    done = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"8 planned, {8 - len(partial)} done, {len(partial)} skipped, 0 failed" in done.stdout
    planned = sorted(f"{i:05d}_prompt-number-{i}_scalecrafter_s{s}.mp4" for i in range(4) for s in range(2))
    rows = _manifest_lines(out)
    assert sorted(r["path"] for r in rows) == planned  # unique lines, exactly the planned set
    assert sorted(p.name for p in out.glob("*.mp4")) == planned
    assert _temporaries(out) == [] and not list(out.glob("manifest.rank*"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_sharding_equals_single_process(tmp_path, model, subprocess_env):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a"}\n{"prompt": "b", "seeds": [4, 5]}\n{"prompt": "c", "height": 32}\n')
    args = ["--seeds", "0,1", "--method", "direct,scalecrafter", "--format", "npz", "--steps", "2"]
    single, multi = tmp_path / "single", tmp_path / "multi"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "scalecrafter_video", *_render_args(prompts, multi, model, *args)]
    cmd.remove("--no-progress")  # one progress bar per rank
    res = subprocess.run(cmd, env=subprocess_env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "12 planned, 12 done, 0 skipped, 0 failed" in res.stdout and "on 2 process(es)" in res.stdout
    assert "render rank 0/2" in res.stderr and "render rank 1/2" in res.stderr
    assert cli.main(_render_args(prompts, single, model, *args)) == 0

    a, b = _manifest_lines(single), _manifest_lines(multi)
    assert [r["path"] for r in a] == [r["path"] for r in b] and len(a) == 12
    assert [r["config_hash"] for r in a] == [r["config_hash"] for r in b]
    assert not list(multi.glob("manifest.rank*"))
    for r in a:
        x, y = np.load(single / r["path"])["frames"], np.load(multi / r["path"])["frames"]
        assert x.dtype == np.uint8 and np.array_equal(x, y), r["path"]


def test_a_second_job_on_the_same_folder_is_refused(tmp_path, model, capsys):
    import fcntl

    prompts = tmp_path / "p.txt"
    prompts.write_text("a\n")
    out = tmp_path / "out"
    out.mkdir()
    with open(out / "render.lock", "w") as held:  # as if another job were running
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert cli.main(_render_args(prompts, out, model)) == 2
        assert "another render job" in capsys.readouterr().err
    assert cli.main(_render_args(prompts, out, model)) == 0
    assert not (out / "render.lock").exists()


def test_png_folders_resume_and_incomplete_folders_are_redone(tmp_path, model, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\n")
    out = tmp_path / "out"
    assert cli.main(_render_args(prompts, out, model, "--format", "png")) == 0
    rows = _manifest_lines(out)
    assert [r["path"] for r in rows] == ["00000_a_scalecrafter_s0", "00001_b_scalecrafter_s0"]
    assert sorted(p.name for p in (out / rows[0]["path"]).iterdir()) == [f"frame_{i:05d}.png" for i in range(3)]
    (out / rows[1]["path"] / "frame_00002.png").unlink()  # damaged after the fact
    capsys.readouterr()
    assert cli.main(_render_args(prompts, out, model, "--format", "png")) == 0
    assert "1 done, 1 skipped" in capsys.readouterr().out
    assert len(list((out / rows[1]["path"]).iterdir())) == 3
    assert len(_manifest_lines(out)) == 2 and _temporaries(out) == []
