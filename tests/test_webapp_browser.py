"""The web app in a real headless Chromium: `scalecrafter-video ui` started as a user would start it,
a prompt typed, Generate clicked, both videos playing in the page, a screenshot saved.

Marked ``browser`` (not in the default run). It needs the [ui] extra, Playwright and Debian's
``chromium`` (``CHROMIUM`` names another binary); without them it is skipped with the reason, unless
``SCALECRAFTER_REQUIRE_UI=1`` (set by .ci/run), where a missing piece is a failure.
``SCALECRAFTER_UI_SCREENSHOT=PATH`` also copies the screenshot there (docs/ui.png is made so).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from scalecrafter_video.demo.model import DEMO_MODEL_DIR

pytestmark = pytest.mark.browser


def _missing() -> str | None:
    try:
        import gradio  # noqa: F401
    except ImportError:
        return "gradio is not installed (pip install -e '.[ui]')"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if _chromium() is None:
        return "no chromium binary (apt-get install chromium, or set CHROMIUM)"
    if not (DEMO_MODEL_DIR / "model_index.json").is_file():
        return "demo model not trained (python scripts/train_demo_model.py)"
    return None


def _chromium() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def requirements():
    reason = _missing()
    if reason is not None:
        if os.environ.get("SCALECRAFTER_REQUIRE_UI") == "1":
            pytest.fail(f"SCALECRAFTER_REQUIRE_UI=1 but {reason}")
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(requirements, tmp_path, subprocess_env):
    """`python -m scalecrafter_video ui` on the demo model, in its own process; stopped with SIGTERM."""
    base = tmp_path
    out, cwd, home, tmp = base / "out", base / "cwd", base / "home", base / "tmp"
    for folder in (cwd, home, tmp):
        folder.mkdir()
    port = _free_port()
    log = open(base / "server.log", "w+")
    # Its own working folder, home and temporary folder: whatever the app wrote outside --out-dir shows up there.
    env = dict(subprocess_env, HOME=str(home), TMPDIR=str(tmp))
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "GRADIO_TEMP_DIR", "HF_HOME"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "scalecrafter_video", "ui", "--port", str(port),
                             "--out-dir", str(out)], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"the ui command exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"the app did not answer at {url} within 240 s:\n{log.read()[-3000:]}")
            time.sleep(0.5)
        yield url, out, cwd, base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_generate_in_chromium(server):
    from playwright.sync_api import sync_playwright

    url, out, cwd, base = server
    external = []
    shot = base / "ui.png"

    def only_localhost(route):
        if route.request.url.startswith(url.rstrip("/")):
            route.continue_()
        else:  # the app must work offline and not phone home
            external.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.route("**/*", only_localhost)
            page.goto(url, wait_until="networkidle")
            prompt = page.locator("#sc-prompt textarea")
            prompt.fill("")
            prompt.type("a red circle moving right")
            page.click("#sc-generate")
            # The progress bar follows the denoising loop while it runs.
            page.wait_for_function("() => document.body.innerText.includes('denoising')", timeout=240_000)
            # Compare is on by default: two players, each with a source the browser has decoded.
            page.wait_for_function(
                """() => {
                    const vs = [...document.querySelectorAll('#sc-videos video')];
                    return vs.length === 2 && vs.every(v => v.currentSrc && !v.error && v.readyState >= 2);
                }""", timeout=300_000)
            players = page.eval_on_selector_all(
                "#sc-videos video", "vs => vs.map(v => [v.currentSrc, v.videoWidth, v.videoHeight])")
            status = page.locator("#sc-status").inner_text()
            page.wait_for_timeout(500)  # one more frame painted
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    assert status.startswith("Done in"), status
    assert [(w, h) for _, w, h in players] == [(64, 64), (64, 64)]  # the demo's default size, decoded
    sources = [src for src, _, _ in players]
    assert "_direct.mp4" in sources[0] and "_scalecrafter.mp4" in sources[1], sources
    assert external == []
    written = sorted(p.name for p in out.iterdir() if p.name != ".uploads")  # gradio's upload folder
    assert len(written) == 4 and all(n.endswith((".mp4", ".mp4.json")) for n in written), written
    for name in written:
        if name.endswith(".json"):
            meta = json.loads((out / name).read_text())
            assert meta["prompt"] == "a red circle moving right" and meta["frames"] == 8
    for folder in (cwd, base / "home", base / "tmp"):  # nothing written outside --out-dir
        # (`import torch` itself makes an empty $TMPDIR/torchinductor_<user>)
        left = [p for p in folder.rglob("*") if not (p.name.startswith("torchinductor_") and p.is_dir()
                                                      and not any(p.iterdir()))]
        assert [str(p.relative_to(base)) for p in left] == []
    assert shot.stat().st_size > 10_000
    copy = os.environ.get("SCALECRAFTER_UI_SCREENSHOT")
    if copy:
        shutil.copyfile(shot, copy)
