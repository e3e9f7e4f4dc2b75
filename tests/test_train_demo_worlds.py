"""The training worlds of the demo recipe's direction stages (scripts/train_demo_model.py)."""

import numpy as np


def midpoint(scene, frames):
    """The trajectory's midpoint as a fraction of the frame (x, y)."""
    return np.array(scene.centre(0, 1, 1)) / 2 + np.array(scene.centre(frames - 1, 1, 1)) / 2


def test_primer_clips_differ_only_in_the_direction_word(load_script):
    train = load_script("train_demo_model")
    scenes, ramp = train.world_scenes(np.random.default_rng(0), 64, "primer")
    assert ramp == train.BACKGROUND_RAMP  # the arrow of time stays: direction needs the clock
    assert {(s.shape, s.colour, s.size, s.speed) for s in scenes} == {("circle", "red", 0.19, 0.045)}
    assert {s.direction for s in scenes} == {"left", "right", "up", "down"}
    by_word = {}
    for s in scenes:
        by_word.setdefault(s.direction, set()).add((round(s.x0, 9), round(s.y0, 9)))
    assert all(len(starts) == 1 for starts in by_word.values())  # one clip per word
    for s in scenes:  # the trajectory's midpoint is the frame's centre
        assert np.allclose(midpoint(s, train.FRAMES), 0.5)


def test_centring_world_centres_about_half_and_leaves_the_other_worlds_alone(load_script):
    train = load_script("train_demo_model")
    scenes, _ = train.world_scenes(np.random.default_rng(1), 400, "v2-centring")
    centred = [np.allclose(midpoint(s, train.FRAMES), 0.5) for s in scenes]
    assert 0.4 < np.mean(centred) < 0.6
    assert len({(s.shape, s.colour) for s in scenes}) == 12
    # a world without a centred share draws exactly the stream it drew before the share existed
    rng = np.random.default_rng(2)
    before = [train.sample_scene(rng, train.FRAMES) for _ in range(8)]
    after, _ = train.world_scenes(np.random.default_rng(2), 8, "v2")
    assert before == after
