"""The web app (``scalecrafter-video ui``): its checks without Gradio, then the running app through
``gradio_client`` on the embedded demo model (skipped, with the reason, when Gradio is not installed,
unless ``SCALECRAFTER_REQUIRE_UI=1``, as in .ci/run)."""

import json
import re
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from scalecrafter_video.demo.model import DEMO_MODEL_DIR
from scalecrafter_video.errors import ScaleCrafterError
from scalecrafter_video.recipes.sidecar import SCHEMA
from scalecrafter_video.webapp import app as webapp
from scalecrafter_video.webapp.app import EDITED, Request, Studio, parse_size

needs_demo = pytest.mark.skipif(not (DEMO_MODEL_DIR / "model_index.json").is_file(),
                                reason="demo model not trained (python scripts/train_demo_model.py)")

try:
    import gradio  # noqa: F401
    from gradio_client import Client

    GRADIO = None
except ImportError as exc:  # the optional [ui] extra
    GRADIO = f"gradio is not installed (pip install -e '.[ui]'): {exc}"


def _require_gradio():
    if GRADIO is not None:
        if os.environ.get("SCALECRAFTER_REQUIRE_UI") == "1":  # .ci/run installs the [ui] extra: no silent skip
            pytest.fail(f"SCALECRAFTER_REQUIRE_UI=1 but {GRADIO}")
        pytest.skip(GRADIO)


# --------------------------------------------------------------------------- without Gradio
def test_package_and_cli_work_without_gradio(repo_root, subprocess_env):
    """Gradio is imported only by `ui`: with it blocked, the CLI builds and `ui` says how to install it."""
    code = (
        "import sys; sys.modules['gradio'] = None\n"
        "from scalecrafter_video.cli import build_parser, main\n"
        "import scalecrafter_video.webapp.app, scalecrafter_video.cli.ui\n"
        "build_parser().parse_args(['ui'])\n"
        "sys.exit(main(['ui', '--port', '7999']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo_root, timeout=300,
                          env=subprocess_env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and 'pip install -e ".[ui]"' in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_ui_defaults_bind_localhost():
    from scalecrafter_video.cli import build_parser

    args = build_parser().parse_args(["ui"])
    assert (args.host, args.port, args.model) == ("127.0.0.1", 7860, None)


@pytest.mark.parametrize("text, size", [("64x96", (64, 96)), ("64x96 · 2x native", (64, 96)), (" 32 X 48 ", (32, 48))])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "64", "x64", "sixtyfour", "0x64", None])
def test_parse_size_refuses(text):
    with pytest.raises(ScaleCrafterError, match="Size must"):
        parse_size(text)


class StubPipe:
    """A model that takes sides in multiples of 8 and must never be sampled by these tests."""

    train_size = (64, 64)
    vae_scale_factor = 8
    defaults = {"num_frames": 4, "fps": 8, "guidance_scale": 7.5, "num_inference_steps": 30}
    scheduler = None
    unet = None

    def check_size(self, height, width):
        if height % 8 or width % 8:
            raise ScaleCrafterError(f"height and width must be multiples of 8, got {height}x{width}")


@pytest.fixture
def stub_studio(tmp_path, monkeypatch):
    def never(*a, **k):
        raise AssertionError("rendered although the inputs were bad")

    monkeypatch.setattr(webapp, "render_video", never)
    return Studio(StubPipe(), "stub", tmp_path / "out")


def _request(**changes):
    fields = dict(prompt="a red circle moving right", size="64x64", frames=2, steps=2, guidance=1.0, seed=0,
                  method="ScaleCrafter", compare=False)
    return Request(**{**fields, **changes})


@pytest.mark.parametrize("changes, message", [
    (dict(size="60x64"), "multiples of 8, got 60x64"),  # the model's own size rule
    (dict(size="big"), "Size must be HEIGHTxWIDTH"),
    (dict(prompt="   "), "Prompt is empty"),
    (dict(frames=0), "Frames must be at least 1"),
    (dict(steps=2.5), "Steps must be a whole number"),
    (dict(seed=-1), "Seed must be at least 0"),
    (dict(guidance=0.5), "Guidance must be a finite number >= 1"),
    (dict(negative_prompt="blurry", guidance=1.0), "Negative prompt needs Guidance > 1"),
    (dict(compare=True, method="Direct-Inf"), "Compare puts Direct-Inf next to"),
    (dict(lr_guidance=1.5), "LR guidance must be in [0, 1]"),
    (dict(method="Bicubic"), "Method must be one of"),
    (dict(schedule="no/such-preset"), "unknown preset"),
    (dict(schedule=EDITED, schedule_yaml=""), "YAML box is empty"),
    (dict(schedule=EDITED, schedule_yaml="dilation: [unclosed"), "malformed"),
    (dict(schedule=EDITED, schedule_yaml="- a list"), "must be a mapping"),
    (dict(schedule=EDITED, schedule_yaml="dilate_tau: 2"), "taus are fractions"),
])
def test_bad_input_is_a_message_before_anything_runs(stub_studio, changes, message):
    with pytest.raises(ScaleCrafterError) as info:
        stub_studio.generate(_request(**changes))
    assert message in webapp.page_message(str(info.value))
    assert not stub_studio.out_dir.exists() or not any(stub_studio.out_dir.iterdir())


def test_size_choices_follow_the_model():
    studio = Studio(StubPipe(), "stub", "unused")
    choices = studio.size_choices()
    sizes = [parse_size(c) for c in choices]
    assert sizes[:5] == [(64, 64), (96, 96), (128, 128), (192, 192), (256, 256)]
    assert len(set(sizes)) == len(sizes)
    assert all(h % 8 == 0 and w % 8 == 0 for h, w in sizes)
    assert any(w > h for h, w in sizes) and any(h > w for h, w in sizes)  # landscape and portrait ratios


# --------------------------------------------------------------------------- the demo model, no Gradio
@pytest.fixture(scope="module")
def demo_pipe():
    pipe, name = webapp.load_model(None)
    return pipe, name


@needs_demo
def test_edited_yaml_is_the_schedule_that_runs(demo_pipe, tmp_path):
    pipe, name = demo_pipe
    studio = Studio(pipe, name, tmp_path / "out", demo=True)
    text = studio.schedule_yaml("64x64", "ScaleCrafter", "auto", None)
    assert "dilation:" in text and "method: scalecrafter" in text
    edited = text.replace("dilate_tau: 0.6", "dilate_tau: 0.25")
    assert edited != text
    result = studio.generate(_request(size="64x64", frames=2, steps=2, schedule=EDITED, schedule_yaml=edited))
    (label, video), = result.videos
    sidecar = json.loads(Path(f"{video}.json").read_text())
    assert label == "ScaleCrafter" and sidecar["config"]["dilate_tau"] == 0.25
    assert "dilate_tau: 0.25" in result.schedule_yaml
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([video.name, f"{video.name}.json"])


@needs_demo
def test_lr_guidance_with_compare(demo_pipe, tmp_path):
    from scalecrafter_video.video_io import read_video

    pipe, name = demo_pipe
    studio = Studio(pipe, name, tmp_path / "out", demo=True)
    result = studio.generate(_request(size="64x64", frames=2, steps=4, lr_guidance=0.5, compare=True))
    assert [label for label, _ in result.videos] == ["Direct-Inf", "ScaleCrafter + LR"]
    (_, direct), (_, lr) = result.videos
    assert direct.name.endswith("_direct.mp4") and lr.name.endswith("_scalecrafter-lr.mp4")
    assert json.loads(Path(f"{lr}.json").read_text())["lr_guidance"] == 0.5
    assert json.loads(Path(f"{direct}.json").read_text())["lr_guidance"] is None
    assert read_video(lr).shape == (2, 64, 64, 3)


# --------------------------------------------------------------------------- the running app
@pytest.fixture(scope="module")
def served(tmp_path_factory, demo_pipe):
    _require_gradio()
    if not (DEMO_MODEL_DIR / "model_index.json").is_file():
        pytest.skip("demo model not trained (python scripts/train_demo_model.py)")
    import tempfile

    base = tmp_path_factory.mktemp("ui")
    cwd = base / "cwd"
    cwd.mkdir()
    (base / "tmp").mkdir()
    old, old_tmp = os.getcwd(), tempfile.tempdir
    os.chdir(cwd)  # anything the app wrote to its working folder would show up here
    # --out-dir outside the working and temporary folders, where Gradio refuses to serve files by default
    tempfile.tempdir = str(base / "tmp")
    pipe, name = demo_pipe
    studio = Studio(pipe, name, base / "out", demo=True)
    app, url = webapp.serve(studio, "127.0.0.1", None, block=False, quiet=True)
    try:
        yield SimpleNamespace(app=app, url=url, out=base / "out", cwd=cwd, base=base,
                              client=Client(url, download_files=str(base / "client"), verbose=False))
    finally:
        app.close()
        os.chdir(old)
        tempfile.tempdir = old_tmp


def _call(client, **changes):
    fields = dict(prompt_v="a blue square moving up", negative_v="", image_v=None, size_v="32x48", frames_v=3,
                  steps_v=2, guidance_v=1.0, seed_v=0, method_v="ScaleCrafter", schedule_v="auto", yaml_v="",
                  lr_v=0, compare_v=True)
    fields.update(changes)
    return client.predict(*fields.values(), api_name="/generate")


def _value(update):
    return update.get("value") if isinstance(update, dict) else update


def test_compare_returns_both_videos_at_the_requested_size(served):
    from scalecrafter_video.video_io import read_video

    assert served.url.startswith("http://127.0.0.1:")
    left, right, files, ran, status = _call(served.client, size_v="32x48", frames_v=3, steps_v=2)
    assert status.startswith("Done in"), status
    videos = [_value(left), _value(right)]
    assert [left.get("label"), right.get("label")] == ["Direct-Inf", "ScaleCrafter"]
    decoded = [read_video(v) for v in videos]
    assert [d.shape for d in decoded] == [(3, 32, 48, 3)] * 2
    assert all(d.dtype == np.uint8 for d in decoded)
    assert "method: scalecrafter" in ran and "target_size:\n- 32\n- 48" in ran
    # The downloads: the two mp4s and their sidecars, all written under --out-dir, nothing else anywhere.
    names = sorted(Path(f).name for f in files)
    assert len(names) == 4 and sum(n.endswith(".mp4") for n in names) == 2
    sidecars = [json.loads((served.out / n).read_text()) for n in names if n.endswith(".json")]
    assert sorted(s["method"] for s in sidecars) == ["direct", "scalecrafter"]
    assert {s["schema"] for s in sidecars} == {SCHEMA}  # the project's one sidecar record
    assert {(s["height"], s["width"], s["frames"], s["seed"]) for s in sidecars} == {(32, 48, 3, 0)}
    written = {p.name for p in served.out.iterdir() if not p.name.startswith(".")}
    assert set(names) <= written and all(n.endswith((".mp4", ".mp4.json")) for n in written)
    assert not any(p.name.startswith(".") and "tmp" in p.name for p in served.out.iterdir())  # no temporaries
    assert list(served.cwd.iterdir()) == []


def test_bad_size_is_a_message_and_the_app_keeps_serving(served):
    before = set(served.out.iterdir())
    left, right, files, ran, status = _call(served.client, size_v="64 by 64")
    assert status.startswith("**Error:**") and "Size must be HEIGHTxWIDTH" in status
    assert "Traceback" not in status and _value(left) is None and _value(right) is None and files is None
    assert set(served.out.iterdir()) == before  # nothing written for a refused request
    _, right, _, _, status = _call(served.client, size_v="32x32", frames_v=2, steps_v=1, compare_v=False,
                                   method_v="Attn-SF")
    assert status.startswith("Done in"), status
    assert right.get("label") == "Attn-SF" and Path(_value(right)).is_file()


def test_progress_follows_the_denoising_steps(served):
    job = served.client.submit("a green circle moving left", "", None, "64x64", 2, 8, 1.0, 1, "ScaleCrafter", "auto",
                               "", 0, False, api_name="/generate")
    seen = set()
    deadline = time.monotonic() + 300
    while not job.done() and time.monotonic() < deadline:
        for p in job.status().progress_data or []:
            seen.add((p.desc, p.length, p.unit))
        time.sleep(0.02)
    assert job.result()[-1].startswith("Done in")
    assert ("denoising", 8, "steps") in seen, seen


def test_one_generation_at_a_time(served, monkeypatch):
    """Two requests sent together: their renders run one after the other, never overlapping."""
    import threading

    generate = [fn for fn in served.app.fns.values() if fn.api_name == "generate"]
    assert len(generate) == 1 and generate[0].concurrency_limit == 1
    spans, real = [], webapp.render_video

    def timed(*args, **kwargs):
        start = time.monotonic()
        try:
            return real(*args, **kwargs)
        finally:
            spans.append((start, time.monotonic(), threading.get_ident()))

    monkeypatch.setattr(webapp, "render_video", timed)
    args = ["a yellow triangle moving down", "", None, "64x64", 4, 6, 1.0, 3, "ScaleCrafter", "auto", "", 0, False]
    jobs = [served.client.submit(*args, api_name="/generate") for _ in range(2)]
    assert all(job.result()[-1].startswith("Done in") for job in jobs)
    assert len(spans) == 2
    (s1, e1, _), (s2, e2, _) = sorted(spans)
    assert e1 <= s2, f"the renders overlapped: {s1:.2f}-{e1:.2f} and {s2:.2f}-{e2:.2f}"


def test_no_analytics(served):
    import gradio.analytics

    assert not gradio.analytics.analytics_enabled()


def test_an_image_for_a_text_model_is_a_message(served, tmp_path):
    from gradio_client import handle_file
    from PIL import Image

    png = tmp_path / "first.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(png)
    *_, status = _call(served.client, image_v=handle_file(str(png)))
    assert status.startswith("**Error:**") and "text-only model" in status and "Input image" in status, status
    assert list(served.cwd.iterdir()) == []
    assert any((served.out / ".uploads").rglob("*.png"))  # the upload landed under --out-dir, like everything else


def test_a_failing_run_is_a_message_and_the_app_keeps_serving(served, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("the sampler broke\nsecond line of detail")

    monkeypatch.setattr(webapp, "render_video", boom)
    left, right, files, _, status = _call(served.client, size_v="32x32", frames_v=2, steps_v=1)
    assert status == "**Error:** generation failed (RuntimeError: the sampler broke)", status
    assert _value(left) is None and _value(right) is None and files is None
    monkeypatch.undo()
    *_, status = _call(served.client, size_v="32x32", frames_v=2, steps_v=1)
    assert status.startswith("Done in"), status


def test_a_busy_port_is_one_error_line(tmp_path, subprocess_env):
    import socket

    _require_gradio()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "scalecrafter_video", "ui", "--port", str(port), "--out-dir",
                               str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                              env=subprocess_env)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1] == (f"error: cannot listen on 127.0.0.1:{port}: the port is in use or the address is not this "
                         "machine's; choose another --port (or --host)"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_page_messages_are_shown_as_written():
    """Globs and paths in a message are not read as Markdown (down_blocks.1.* would lose its * and _)."""
    text = "unknown layer glob 'down_blocks.1.*' in /tmp/my_out_dir <b>"
    shown = webapp.plain_markdown(text)
    assert shown == r"unknown layer glob 'down\_blocks.1.\*' in /tmp/my\_out\_dir \<b\>"
    assert re.sub(r"\\(.)", r"\1", shown) == text  # the escapes are all the page takes away
