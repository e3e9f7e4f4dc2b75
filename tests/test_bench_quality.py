"""scripts/bench_quality.py resumes without changing a single pixel: a cell asked for with more videos
starts from a smaller cached cell, an interrupted cell goes on from its finished batches, and a
cell made with another batch size (other seeds per video) is never reused."""

from pathlib import Path

import numpy as np
import pytest

FAST = ["--sizes", "32x32", "--methods", "direct", "--steps", "2", "--fvd", "off", "--threads", "1"]


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench_quality")


def run(bench, out: Path, videos: int, batch: int = 1):
    bench.main(FAST + ["--videos", str(videos), "--batch", str(batch), "--out", str(out)])
    (cell,) = Path(f"{out}.cells").glob(f"32x32-direct-*-n{videos}-*.npz")
    return np.load(cell)["videos"]


@pytest.fixture(scope="module")
def fresh3(bench, tmp_path_factory):
    """Three videos made in one go, batch size 1: what every resumed run must reproduce exactly."""
    return run(bench, tmp_path_factory.mktemp("fresh") / "bench", 3)


def test_more_videos_start_from_the_smaller_cell(bench, fresh3, tmp_path, capsys):
    out = tmp_path / "bench"
    two = run(bench, out, 2)
    capsys.readouterr()
    three = run(bench, out, 3)
    assert "2 of 3 videos already made" in capsys.readouterr().out
    np.testing.assert_array_equal(three[:2], two)
    np.testing.assert_array_equal(three, fresh3)


def test_an_interrupted_cell_goes_on_from_its_finished_batches(bench, fresh3, tmp_path, monkeypatch):
    out, real, calls = tmp_path / "bench", bench.generate, []

    def interrupted_after_two(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "generate", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        run(bench, out, 3)
    (partial,) = Path(f"{out}.cells").glob("*.partial.npz")
    assert len(np.load(partial)["videos"]) == 2

    calls.clear()
    monkeypatch.setattr(bench, "generate", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    three = run(bench, out, 3)
    assert len(calls) == 1 and len(calls[0]) == 1  # only the third video was made
    assert not list(Path(f"{out}.cells").glob("*.partial.npz"))
    np.testing.assert_array_equal(three, fresh3)


def test_a_cell_of_another_batch_size_is_not_reused(bench, tmp_path, capsys):
    out = tmp_path / "bench"
    run(bench, out, 2, batch=1)
    capsys.readouterr()
    four = run(bench, out, 4, batch=2)
    assert "already made" not in capsys.readouterr().out
    np.testing.assert_array_equal(four, run(bench, tmp_path / "other", 4, batch=2))


def test_a_cell_ending_in_a_short_batch_is_not_reused(bench, tmp_path, capsys):
    out = tmp_path / "bench"
    run(bench, out, 3, batch=2)  # batches [0, 1] and [2]: a five-video run makes [2, 3] together
    capsys.readouterr()
    five = run(bench, out, 5, batch=2)
    assert "already made" not in capsys.readouterr().out
    np.testing.assert_array_equal(five, run(bench, tmp_path / "other", 5, batch=2))


def test_summary_table_puts_the_floor_first_and_bolds_only_what_differs(bench):
    def cell(one, fvd, direction=0.5, **extra):
        return {"summary": {"one_object_rate": one, "shape_accuracy": 1.0, "colour_accuracy": 1.0,
                            "direction_accuracy": direction, "travel": 0.3, "fvd": fvd, "fvd_crops": None,
                            "kvd": 2.0}, **extra}

    results = {"64x64": {
        "ground truth": cell(1.0, 0.0),
        "direct": cell(0.1, 700.0, direction=float("nan")),  # no one-object frame, so no direction
        "tuned": cell(0.1, 700.0, config={"stages": [{"until": 1.0, "dilation": {}}]}),
        "scalecrafter": cell(1.0, 650.0),
        "disperse": {"summary": {}, "not_applicable": "unequal axes"},
        "ground truth, new draw": cell(1.0, 28.0),
    }, "32x32": {"direct": cell(1.0, 360.0)}}
    lines = bench.summary_table(results)
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert [r[:2] for r in rows] == [
        ["32x32", "Direct-Inf"],  # squares by area: the training size first
        ["64x64", "floor (ground truth redrawn)"],
        ["", "Direct-Inf"], ["", "tuned schedule (= Direct-Inf)"], ["", "ScaleCrafter (re-dilation)"]]
    floor, direct, tuned, sc = rows[1:]
    assert floor[2:] == ["100.0%", "100.0%", "100.0%", "50.0%", "0.300", "28", "-", "2.0"]  # the floor is never bold
    assert sc[2] == "**100.0%**" and sc[7] == "**650**" and direct[2] == "10.0%"
    assert direct[5] == "-" and sc[5] == tuned[5] == "50.0%"  # a NaN is shown as "-" and is nobody's best
    # equal in every method row (shape, colour, direction, KVD), no better side (travel), or one row: no bold
    assert "**" not in "".join(direct[3:7] + direct[8:] + sc[3:7] + rows[0][2:])
