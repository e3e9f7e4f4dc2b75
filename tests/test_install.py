"""The package works outside the checkout: a wheel holds the presets and the demo model, and an
installed copy runs `demo` and resolves `--preset` from an unrelated folder."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, cwd=build, env={**os.environ, "PIP_NO_INPUT": "1"})
    return next(out.glob("scalecrafter_video-*.whl"))


def test_wheel_contains_presets_and_demo_model(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "scalecrafter_video/_data/configs/sd2.1/2048x2048.yaml" in names
    assert "scalecrafter_video/_data/configs/svd/2048x1152.yaml" in names
    assert "scalecrafter_video/_data/shapes-t2v/unet/diffusion_pytorch_model.safetensors" in names


def test_installed_wheel_runs_the_demo_from_an_unrelated_folder(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # The dependencies (torch, diffusers, ...) come from this interpreter's site-packages as plain path
    # entries: the .pth files there (an editable install of this checkout) are not run, so the venv
    # sees only the installed wheel.
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    import sysconfig

    deps = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    Path(site, "_dependencies.pth").write_text("\n".join(deps) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCALECRAFTER_VIDEO_CONFIGS")}
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", "-q", str(wheel)],
                   check=True, env=env)
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import scalecrafter_video, sys; from scalecrafter_video import "
                            "ScaleCrafterConfig, list_presets; print(scalecrafter_video.__file__); "
                            "print(len(list_presets())); ScaleCrafterConfig.preset('zeroscope/1152x640')"],
                           cwd=work, env=env, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr[-2000:]
    where = where.stdout.split()
    assert where[0].startswith(str(venv)) and int(where[1]) >= 20
    demo = subprocess.run([str(venv / "bin" / "scalecrafter-video"), "demo", "--steps", "2", "--no-gif",
                           "--out", "demo.mp4"], cwd=work, env=env, capture_output=True, text=True)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert (work / "demo.mp4").stat().st_size > 0 and (work / "demo.mp4.json").is_file()
