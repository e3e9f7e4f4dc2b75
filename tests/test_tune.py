"""Schedule search (``tune``): the setting with the least noise-estimation error wins each bucket."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scalecrafter_video import ScaleCrafterConfig, apply_scalecrafter, remove_scalecrafter
from scalecrafter_video.cli import main
from scalecrafter_video.engine import scalecrafter_state
from scalecrafter_video.recipes.tune import candidates_for, tune_schedule
from scalecrafter_video.trajectory import current_step


@pytest.fixture(scope="module")
def pipe(tiny_t2v_folder):
    from scalecrafter_video.pipelines import load_pipeline

    return load_pipeline(tiny_t2v_folder, device="cpu")


def _references(n=2, frames=2, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, frames, size, size, 3), dtype=np.uint8)


def _signature(actions: dict) -> tuple:
    return tuple(sorted((key, factor) for key, (factor, _) in actions.items()))


def _plant(pipe, planted: list[str], candidates, buckets: int, steps: int):
    """A model whose prediction is right only under the planted setting of each bucket: every other
    setting gets a large offset, so the search must find the planted one."""
    wanted = {}
    for name in set(planted):
        table = next(c.table for c in candidates if c.name == name)
        apply_scalecrafter(pipe.unet, ScaleCrafterConfig.from_dict(dict(
            train_size=pipe.train_size, vae_scale_factor=pipe.vae_scale_factor, dilation=table, dilate_tau=1.0,
            method="scalecrafter" if table else "direct")))
        state = scalecrafter_state(pipe.unet)
        if state is None:
            wanted[name] = ()
        else:
            from scalecrafter_video.trajectory import StepInfo

            state.begin_call(StepInfo(0, steps), (16, 16))
            wanted[name] = _signature(state.actions)
            state.end_call()
        remove_scalecrafter(pipe.unet)
    calls = []

    def hook(module, args, kwargs, output):
        step = current_step()
        bucket = step.index * buckets // steps
        state = scalecrafter_state(module)
        active = _signature(state.actions) if state is not None else ()
        calls.append((step.index, active))
        if active != wanted[planted[bucket]]:
            output.sample.add_(1.0)
        return output

    return pipe.unet.register_forward_hook(hook, with_kwargs=True, prepend=True), calls


def _search(pipe, planted, candidates, state_path, seed=3):
    """tune_schedule on the planted model (4 buckets of 8 steps, one timestep each); returns
    ``(result, calls)`` with ``calls`` the (step, active setting) of every UNet call."""
    handle, calls = _plant(pipe, planted, candidates, buckets=4, steps=8)
    try:
        result = tune_schedule(pipe, _references(), ["a cat", ""], buckets=4, num_steps=8, timesteps_per_bucket=1,
                               seed=seed, state_path=state_path, progress=False)
    finally:
        handle.remove()
    return result, calls


def test_tune_finds_the_planted_setting_of_every_bucket(pipe, tmp_path):
    auto = ScaleCrafterConfig.auto(pipe.train_size, (32, 32), num_levels=4, vae_scale_factor=pipe.vae_scale_factor)
    candidates = candidates_for(auto, 4)
    names = [c.name for c in candidates]
    assert names[0] == "direct" and len(names) == len(set(names)) >= 5
    planted = [names[2], names[2], "direct", names[-1]]  # the first two buckets merge, direct stays in the middle
    state = tmp_path / "state.json"
    result, calls = _search(pipe, planted, candidates, state)
    assert result.winners == planted
    tables = {c.name: c.table for c in candidates}
    stages = result.config.stages
    assert [s["until"] for s in stages] == [0.5, 0.75, 1.0]
    assert stages[0]["dilation"] == tables[names[2]] and stages[1]["dilation"] == {} \
        and stages[2]["dilation"] == tables[names[-1]]
    # one timestep per bucket, at the bucket's first step; every candidate measured in every bucket
    assert sorted({i for i, _ in calls}) == [0, 2, 4, 6]
    assert len(calls) == 4 * len(candidates)  # 2 clips in one batch per (bucket, candidate)

    # resume: the same search again reads every error from the state file and calls the UNet zero times
    again, calls = _search(pipe, planted, candidates, state)
    assert calls == [] and again.errors == result.errors
    # another seed is another search: the saved errors are not reused
    _, calls = _search(pipe, planted, candidates, state, seed=4)
    assert len(calls) == 4 * len(candidates)
    assert len(json.loads(state.read_text())["errors"]) == 4 * len(candidates)


def test_tune_command_writes_a_staged_schedule_that_applies(pipe, tiny_t2v_folder, tmp_path, capsys):
    refs = tmp_path / "refs.npy"
    np.save(refs, _references(n=4))
    out = tmp_path / "tuned.yaml"
    args = ["tune", "--model", str(tiny_t2v_folder), "--height", "32", "--width", "32", "--reference", str(refs),
            "--out", str(out), "--buckets", "2", "--steps", "4", "--timesteps-per-bucket", "1", "--frames", "2",
            "--multipliers", "1", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "bucket" in printed and "wrote" in printed
    cfg = ScaleCrafterConfig.from_yaml(out)
    assert cfg.method in ("scalecrafter", "direct")
    apply_scalecrafter(pipe, cfg)  # every glob of every stage matches a layer of the model
    remove_scalecrafter(pipe)
    assert (tmp_path / "tuned.yaml.tune.json").is_file()
    # an existing output is refused without --overwrite; the resumed run with it measures nothing new
    assert main(args) == 2 and "already exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0


@pytest.mark.parametrize("make,fragment", [
    (lambda d: np.save(d / "r.npy", _references(n=2)), "at least 4"),
    (lambda d: np.save(d / "r.npy", _references(n=4, size=48)), "48x48 pixels, the target is 32x32"),
])
def test_bad_references_are_one_line(tiny_t2v_folder, tmp_path, capsys, make, fragment):
    make(tmp_path)
    code = main(["tune", "--model", str(tiny_t2v_folder), "--height", "32", "--width", "32", "--reference",
                 str(tmp_path / "r.npy"), "--out", str(tmp_path / "s.yaml"), "--frames", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and fragment in err and err.count("\n") == 1 and not (tmp_path / "s.yaml").exists()
