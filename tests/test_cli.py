"""The generate command end to end on a tiny local model, and its one-line errors."""

import json

import pytest

from scalecrafter_video.cli import main
from scalecrafter_video.video_io import read_video


@pytest.fixture(scope="module")
def model(tiny_t2v_folder):
    return tiny_t2v_folder


def test_generate_mp4_with_auto_schedule(model, tmp_path, capsys):
    out = tmp_path / "v.mp4"
    assert main(["generate", "--model", str(model), "--prompt", "a cat", "--height", "32", "--width", "48",
                 "--out", str(out)]) == 0
    video = read_video(out)
    assert video.shape == (3, 32, 48, 3)
    meta = json.loads((tmp_path / "v.mp4.json").read_text())
    assert meta["seed"] == 0 and meta["config"]["dilation"] and meta["config"]["train_size"] == [16, 16]
    assert "wrote" in capsys.readouterr().out


def test_generate_compare_png_frames_with_preset(model, tmp_path):
    out = tmp_path / "frames"
    assert main(["generate", "--model", str(model), "--prompt", "a cat", "--height", "32", "--width", "32",
                 "--preset", "modelscope/512x512", "--frames", "2", "--compare", "--out", str(out)]) == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2
    from PIL import Image

    w, h = Image.open(pngs[0]).size
    assert w == 32 + 4 + 32 and h > 32


@pytest.mark.parametrize("args,match", [
    (["--height", "33"], "multiples of 2"),
    (["--preset", "nope/1x1"], "unknown preset"),
    (["--config", "{bad}"], "config file not found"),
])
def test_bad_inputs_give_one_line(model, tmp_path, capsys, args, match):
    code = main(["generate", "--model", str(model), "--prompt", "x", "--out", str(tmp_path / "o.mp4"), *args])
    err = capsys.readouterr().err
    assert code == 2 and match in err and err.count("\n") == 1 and "Traceback" not in err


def test_malformed_yaml_and_missing_model(model, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dilation: {mid_block.*: [2\n")
    assert main(["generate", "--model", str(model), "--prompt", "x", "--config", str(bad), "--out",
                 str(tmp_path / "o.mp4")]) == 2
    assert "malformed YAML" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path / "missing"), "--prompt", "x", "--out", "o.mp4"]) == 2
    assert "model not found" in capsys.readouterr().err
    assert main(["generate", "--model", "someorg/some-model", "--prompt", "x", "--out", "o.mp4"]) == 2
    assert "hubs are not used" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


def test_generate_with_lr_guidance(model, tmp_path, capsys):
    out = tmp_path / "lr.gif"
    assert main(["generate", "--model", str(model), "--prompt", "a cat", "--height", "32", "--width", "32",
                 "--lr-guidance", "0.5", "--compare", "--out", str(out)]) == 0
    assert read_video(out).shape[0] == 3
    assert json.loads((tmp_path / "lr.gif.json").read_text())["lr_guidance"] == 0.5
    assert main(["generate", "--model", str(model), "--prompt", "x", "--lr-guidance", "1.5",
                 "--out", str(tmp_path / "bad.mp4")]) == 2
    assert "(0, 1]" in capsys.readouterr().err


def test_generate_never_destroys_what_it_did_not_write(model, tmp_path, capsys):
    mine = tmp_path / "mydir"
    (mine / "sub").mkdir(parents=True)
    (mine / "thesis.tex").write_text("chapter 1")
    (mine / "sub" / "data.csv").write_text("1,2")
    for extra in ([], ["--overwrite"]):
        code = main(["generate", "--model", str(model), "--prompt", "a cat", "--out", str(mine), *extra])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error:") and err.count("\n") == 1
    assert (mine / "thesis.tex").read_text() == "chapter 1" and (mine / "sub" / "data.csv").read_text() == "1,2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mydir"]


def test_generate_refuses_existing_output_then_overwrites_its_own(model, tmp_path, capsys):
    out = tmp_path / "v.gif"
    args = ["generate", "--model", str(model), "--prompt", "a cat", "--frames", "2", "--out", str(out)]
    assert main(args) == 0
    before = out.read_bytes()
    assert main(args + ["--seed", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main(args + ["--seed", "1", "--overwrite"]) == 0
    assert out.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.gif", "v.gif.json"]


def test_compile_flag_compiles_the_unet_once_and_keeps_the_pixels(model, tmp_path, monkeypatch):
    """generate --compile goes through engine.compile_unet (here with Dynamo's eager backend, which
    compiles in seconds on a CPU); the written frames are those of the uncompiled run."""
    from scalecrafter_video import engine

    calls, real = [], engine.compile_unet

    def compile_eager(target, **kw):
        calls.append(type(target).__name__)
        return real(target, backend="eager")

    monkeypatch.setattr(engine, "compile_unet", compile_eager)

    def run(name, *extra):
        out = tmp_path / name
        assert main(["generate", "--model", str(model), "--prompt", "a cat", "--height", "32", "--width", "32",
                     "--frames", "2", "--steps", "3", "--out", str(out), *extra]) == 0
        return read_video(out).astype(int), json.loads((tmp_path / f"{name}.json").read_text())

    plain, plain_meta = run("plain.mp4")
    compiled, compiled_meta = run("compiled.mp4", "--compile")
    assert len(calls) == 1
    assert abs(plain - compiled).max() <= 1  # float rounding at most, through the mp4
    assert compiled_meta["compiled"] is True and plain_meta["compiled"] is False


def test_render_compile_flag_reaches_the_library(model, tmp_path, monkeypatch):
    from scalecrafter_video import engine

    calls = []
    monkeypatch.setattr(engine, "compile_unet", lambda target, **kw: calls.append(target) or target)
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    assert main(["render", "--prompts", str(prompts), "--out-dir", str(tmp_path / "o"), "--model", str(model),
                 "--frames", "2", "--steps", "2", "--no-progress", "--compile"]) == 0
    assert len(calls) == 1 and calls[0].unet is not None
    (sidecar,) = (tmp_path / "o").glob("*.mp4.json")
    assert json.loads(sidecar.read_text())["compiled"] is True
