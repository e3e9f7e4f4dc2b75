"""The FVD run recipe (scripts/fvd_run.sh, scripts/fvd_demo.sh)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_fvd_run_usage_and_missing_inputs(tmp_path):
    res = subprocess.run(["bash", str(REPO / "scripts/fvd_run.sh")], capture_output=True, text=True)
    assert res.returncode == 2 and "PROMPTS MODEL REFERENCE RUN_DIR" in res.stdout
    res = subprocess.run(["bash", str(REPO / "scripts/fvd_run.sh"), str(tmp_path / "nope.txt"), str(tmp_path),
                          str(tmp_path), str(tmp_path / "run")], capture_output=True, text=True)
    assert res.returncode == 2 and "nope.txt does not exist" in res.stderr


@pytest.mark.slow
def test_fvd_demo_end_to_end_and_resume(tmp_path, subprocess_env):
    """Two prompts, 9 frames: render both methods, FVD each against ground-truth scenes, one report."""
    run = tmp_path / "run"
    env = dict(subprocess_env, N="2", FRAMES="9", STEPS="2")
    res = subprocess.run(["bash", str(REPO / "scripts/fvd_demo.sh"), str(run)], env=env, capture_output=True,
                         text=True, timeout=1200, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((run / "report.json").read_text())
    assert [m["method"] for m in report["methods"]] == ["scalecrafter", "direct"]
    for m in report["methods"]:
        assert m["videos"] == 2 and m["failed"] == 0 and m["num_real"] == 2 and m["num_fake"] == 2
        assert math.isfinite(m["fvd"]) and m["fvd"] >= 0
    assert "| scalecrafter | 2 | 0 |" in (run / "report.md").read_text()
    again = subprocess.run(["bash", str(REPO / "scripts/fvd_demo.sh"), str(run)], env=env, capture_output=True,
                           text=True, timeout=1200, cwd=REPO)
    assert again.returncode == 0 and again.stdout.count("0 done, 2 skipped") == 2
