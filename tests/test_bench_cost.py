"""scripts/bench_cost.py keeps working: every mode runs through the public API on a real family
layout (widths cut down) and the table reports ratios to Direct-Inf measured in the same run."""

import json
import runpy
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_cost.py"


@pytest.fixture(scope="module")
def bench():
    return runpy.run_path(str(SCRIPT))


def test_sizes_and_training_scale(bench):
    fam = bench["FAMILIES"]["svd"]
    assert bench["parse_size"]("2x", fam.train) == (1152, 2048)
    assert bench["parse_size"]("1024x576", fam.train) == (576, 1024)  # WIDTHxHEIGHT
    assert bench["train_size"](fam, 0.5) == (256, 512)  # multiples of 64: whole latents at every level
    assert bench["train_size"](bench["FAMILIES"]["sd1.5"], 1.0) == (512, 512)


def test_every_mode_runs_and_is_a_ratio_to_direct_inf(bench, tmp_path, capsys):
    import torch

    threads = torch.get_num_threads()
    try:
        bench["main"](["--model", "sd1.5", "--tiny", "--train-scale", "0.25", "--sizes", "2x", "--device", "cpu",
                       "--decodes", "decode", "--threads", "1", "--json", str(tmp_path / "cost.json")])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    data = json.loads((tmp_path / "cost.json").read_text())
    (row,) = data["results"][0]["sizes"]
    assert row["size"] == "256x256" and row["latent"] == "32x32"
    assert set(row["modes"]) == {"direct", "redilate", "+ndcfg", "+disperse", "decode"}
    for mode, rec in row["modes"].items():
        assert "error" not in rec, (mode, rec)
        assert rec["seconds"] > 0 and rec["peak_bytes"] >= 0 and "time_ratio" in rec
    assert row["modes"]["direct"]["time_ratio"] == 1.0
    assert "| 256x256 (32x32) | +ndcfg |" in out and "TINY" in out
