"""Hostile inputs: every user error is one `error:` line (exit 2), no traceback, and nothing outside the
intended output is created, changed or removed; signals leave the old output intact and no temporaries."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scalecrafter_video.cli import main


@pytest.fixture(scope="module")
def model(tiny_t2v_folder):
    return tiny_t2v_folder


def _broken_copy(model: Path, root: Path, how: str) -> Path:
    bad = root / f"model-{how}"
    shutil.copytree(model, bad)
    weights = bad / "unet" / "diffusion_pytorch_model.safetensors"
    if how == "truncated-weights":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif how == "corrupt-weights":
        weights.write_bytes(b"\0" * 4096)
    elif how == "missing-weights":
        weights.unlink()
    elif how == "missing-scheduler":
        (bad / "scheduler" / "scheduler_config.json").unlink()
    elif how == "bad-unet-config":
        (bad / "unet" / "config.json").write_text("{not json")
    elif how == "bad-defaults":
        (bad / "scalecrafter_video.json").write_text("[1, 2")
    elif how == "wrong-class":
        index = json.loads((bad / "model_index.json").read_text())
        (bad / "model_index.json").write_text(json.dumps({**index, "_class_name": "NoSuchPipeline"}))
    return bad


def _snapshot(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_size if p.is_file() else -1) for p in root.rglob("*"))


CLI_CASES = {
    "height 0": (["--height", "0"], "--height"),
    "width 0": (["--width", "0"], "--width"),
    "frames 0": (["--frames", "0"], "--frames"),
    "frames -3": (["--frames", "-3"], "--frames"),
    "steps 0": (["--steps", "0"], "--steps"),
    "steps -2": (["--steps", "-2"], "--steps"),
    "steps 5000": (["--steps", "5000"], "training timesteps"),
    "fps 0": (["--fps", "0"], "--fps"),
    "fps nan": (["--fps", "nan"], "--fps"),
    "guidance nan": (["--guidance", "nan"], "--guidance"),
    "guidance inf": (["--guidance", "inf"], "--guidance"),
    "guidance negative": (["--guidance", "-3"], "--guidance"),
    "negative prompt without cfg": (["--guidance", "1", "--negative-prompt", "dog"], "--negative-prompt"),
    "eta nan": (["--eta", "nan"], "--eta"),
    "eta negative": (["--eta", "-1"], "--eta"),
    "seed 2**70": (["--seed", str(2**70)], "--seed"),
    "guidance 1e30 (NaN mid-run)": (["--guidance", "1e30"], "non-finite latents"),
    "image for a text model": (["--image", "IMAGE"], "text-only"),
    "dilation inf": (["--config", "YAML:dilation: {mid_block.*: .inf}"], "dilation"),
    "empty schedule": (["--config", "YAML:"], "empty"),
    "progressive string": (["--config", "YAML:progressive: 'false'\ndilation: {mid_block.*: 2}"], "progressive"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_bad_numbers_and_schedules(model, tmp_path, capsys, case):
    args, match = CLI_CASES[case]
    args = list(args)
    for i, a in enumerate(args):
        if a == "IMAGE":
            from PIL import Image

            Image.new("RGB", (8, 8)).save(tmp_path / "img.png")
            args[i] = str(tmp_path / "img.png")
        elif a.startswith("YAML:"):
            (tmp_path / "s.yaml").write_text(a[5:])
            args[i] = str(tmp_path / "s.yaml")
    before = _snapshot(tmp_path)
    code = main(["generate", "--model", str(model), "--prompt", "a cat", "--height", "32", "--width", "32",
                 "--out", str(tmp_path / "o.mp4"), *args][: None])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith(("denoising", "\r"))]
    assert code == 2, err
    assert lines[-1].startswith("error:") and match in lines[-1], err
    assert "Traceback" not in err
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("how", ["truncated-weights", "corrupt-weights", "missing-weights", "missing-scheduler",
                                 "bad-unet-config", "bad-defaults", "wrong-class"])
def test_broken_model_folders_are_one_line(model, tmp_path, capsys, how):
    bad = _broken_copy(model, tmp_path, how)
    out = tmp_path / "out"
    out.mkdir()
    code = main(["generate", "--model", str(bad), "--prompt", "a cat", "--out", str(out / "o.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1 and "Traceback" not in err, err
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("out", ["", ".", "x" * 300 + ".mp4", "FILE/o.mp4"])
def test_bad_output_locations_fail_before_loading(tmp_path, capsys, out):
    (tmp_path / "FILE").write_text("keep")
    out = str(tmp_path / out) if out not in ("", ".") else out
    code = main(["generate", "--model", str(tmp_path / "no-such-model"), "--prompt", "a cat", "--out", out])
    err = capsys.readouterr().err
    # the output is refused first: the missing model is never reached
    assert code == 2 and err.startswith("error:") and "model not found" not in err, err
    assert (tmp_path / "FILE").read_text() == "keep"


def test_factor_larger_than_the_feature_map_warns(model, tmp_path):
    (tmp_path / "s.yaml").write_text("dilation: {mid_block.*: 1000}\n")
    with pytest.warns(RuntimeWarning, match="dilation 1000 on a 2x2 feature map"):
        assert main(["generate", "--model", str(model), "--prompt", "a cat", "--height", "32", "--width", "32",
                     "--config", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "o.gif")]) == 0


def test_non_utf8_prompt(model, tmp_path, capsys):
    code = main(["generate", "--model", str(model), "--prompt", "caf\udce9", "--out", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and "UTF-8" in err and list(tmp_path.iterdir()) == []


def test_debug_shows_the_traceback(model, tmp_path, capsys):
    assert main(["generate", "--model", str(model), "--prompt", "x", "--steps", "0", "--out",
                 str(tmp_path / "o.mp4"), "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error:")


# ------------------------------------------------------------------ signals
def _spawn(model, out, env, *extra):
    env = {**env, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "scalecrafter_video", "generate", "--model", str(model), "--prompt", "a cat",
           "--height", "32", "--width", "32", "--frames", "2", "--steps", "400", "--out", str(out), "--overwrite", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)


def _wait_for_sampling(proc, timeout=120):
    start = time.time()
    buf = ""
    while time.time() - start < timeout:
        ch = proc.stderr.read(1)
        if not ch:
            break
        buf += ch
        if "denoising" in buf:
            return buf
    raise AssertionError(f"sampling never started: {buf}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_keeps_the_old_output_and_no_temporary_survives(model, tmp_path, sig, subprocess_env):
    out = tmp_path / "v.gif"
    assert main(["generate", "--model", str(model), "--prompt", "a cat", "--frames", "2", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / ".v.Abc_1234.tmp.gif").write_bytes(b"")  # what a run killed while writing leaves
    proc = _spawn(model, out, subprocess_env)
    _wait_for_sampling(proc)
    proc.send_signal(sig)
    rest = proc.stderr.read()
    code = proc.wait(timeout=60)
    if sig == signal.SIGTERM:
        assert code == 143 and "terminated" in rest, rest
    else:
        assert code == -signal.SIGKILL
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if not p.name.startswith(".")} == before
    # the next run sweeps the temporaries of the killed one
    assert main(["generate", "--model", str(model), "--prompt", "a cat", "--frames", "2", "--out", str(out),
                 "--overwrite", "--seed", "3"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.gif", "v.gif.json"]


def test_fvd_json_to_a_folder_is_refused_before_computing(tmp_path, capsys):
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "keep.txt").write_text("x")
    code = main(["fvd", str(tmp_path / "real"), str(tmp_path / "fake"), "--json", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert code == 2 and "--json" in err and err.count("\n") == 1
    assert (tmp_path / "report" / "keep.txt").read_text() == "x"


def test_out_of_memory_is_one_line_with_advice(model, tmp_path, capsys, monkeypatch):
    import torch

    from scalecrafter_video.pipelines.text_to_video import TextToVideoPipeline

    def boom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(TextToVideoPipeline, "__call__", boom)
    code = main(["generate", "--model", str(model), "--prompt", "a cat", "--out", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: out of memory") and "--tile-size" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
