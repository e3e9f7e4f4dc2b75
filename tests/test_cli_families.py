"""generate / render on the diffusers video families: recognised from model_index.json, --image,
--motion-adapter, family options, and their one-line errors."""

import json

import pytest

from scalecrafter_video.cli import main
from scalecrafter_video.video_io import read_video

SMALL = {"train_size": [16, 16], "num_frames": 2, "num_inference_steps": 2}


def _folder(builder, root, name):
    folder = builder(root / name)
    (folder / "scalecrafter_video.json").write_text(json.dumps(SMALL))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny):
    root = tmp_path_factory.mktemp("families")
    image = root / "first.png"
    tiny.image((32, 32)).save(image)
    return {
        "animatediff": _folder(tiny.animatediff_folder, root, "ad"),
        "sd": tiny.sd15_folder_for_animatediff(root / "sd"),
        "adapter": tiny.motion_adapter_folder(root / "adapter"),
        "svd": _folder(tiny.svd_folder, root, "svd"),
        "i2vgenxl": _folder(tiny.i2vgenxl_folder, root, "i2v"),
        "image": image,
    }


def _generate(model, out, *extra):
    return main(["generate", "--model", str(model), "--prompt", "a cat", "--height", "32", "--width", "32",
                 "--out", str(out), *extra])


@pytest.mark.parametrize("name,family,extra", [
    ("animatediff", "animatediff", []),
    ("svd", "svd", ["--image", "IMAGE", "--motion-bucket-id", "40", "--cond-fps", "6"]),
    ("i2vgenxl", "i2vgen-xl", ["--image", "IMAGE"]),
])
def test_generate_recognises_the_family(models, tmp_path, name, family, extra):
    extra = [str(models["image"]) if e == "IMAGE" else e for e in extra]
    out = tmp_path / "v.gif"
    assert _generate(models[name], out, "--compare", *extra) == 0
    assert read_video(out).shape[0] == 2
    meta = json.loads((tmp_path / "v.gif.json").read_text())
    assert meta["family"] == family and meta["config"]["dilation"]
    if name == "svd":
        assert meta["options"] == {"motion_bucket_id": 40, "fps": 6}


def test_animatediff_from_sd_folder_plus_motion_adapter(models, tmp_path):
    out = tmp_path / "v.gif"
    assert _generate(models["sd"], out, "--frames", "2", "--steps", "2", "--motion-adapter", str(models["adapter"])) == 0
    meta = json.loads((tmp_path / "v.gif.json").read_text())
    assert meta["family"] == "animatediff" and meta["motion_adapter"] == str(models["adapter"])


def test_render_on_an_image_to_video_family(models, tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a cat\n")
    out_dir = tmp_path / "runs"
    args = ["render", "--prompts", str(prompts), "--out-dir", str(out_dir), "--model", str(models["svd"]),
            "--height", "32", "--width", "32", "--image", str(models["image"]), "--method", "scalecrafter,direct",
            "--no-progress"]
    assert main(args) == 0
    rows = [json.loads(line) for line in (out_dir / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    side = json.loads((out_dir / f"{rows[0]['path']}.json").read_text())
    assert side["family"] == "svd" and side["image_sha256"]


def _bad(tmp_path, models):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "notes.txt").write_text("x")
    return {
        "no image for svd": ([str(models["svd"])], [], "--image PATH"),
        "image for text-only": ([str(models["animatediff"])], ["--image", str(models["image"])], "text-only"),
        "missing image": ([str(models["svd"])], ["--image", str(tmp_path / "nope.png")], "file not found"),
        "unreadable image": ([str(models["svd"])], ["--image", str(tmp_path / "broken.png")], "not a readable image"),
        "wrong image type": ([str(models["svd"])], ["--image", str(tmp_path / "notes.txt")], ".png or .jpg"),
        "svd option on animatediff": ([str(models["animatediff"])], ["--motion-bucket-id", "3"], "not an option"),
        "adapter on a video folder": ([str(models["svd"])], ["--motion-adapter", str(models["adapter"])],
                                      "Stable Diffusion"),
        "adapter missing": ([str(models["sd"])], ["--motion-adapter", str(tmp_path)], "not a MotionAdapter"),
        "min guidance on animatediff": ([str(models["animatediff"])], ["--min-guidance", "2"],
                                        "--min-guidance: not an option"),
        "tile on animatediff": ([str(models["animatediff"])], ["--tile-size", "8"], "--tile-size"),
    }


@pytest.mark.parametrize("case", ["no image for svd", "image for text-only", "missing image", "unreadable image",
                                  "wrong image type", "svd option on animatediff", "adapter on a video folder",
                                  "adapter missing", "min guidance on animatediff", "tile on animatediff"])
def test_family_input_errors_are_one_line(models, tmp_path, capsys, case):
    model, extra, match = _bad(tmp_path, models)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    code = _generate(model[0], tmp_path / "o.mp4", *extra)
    err = capsys.readouterr().err
    assert code == 2 and match in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
