"""Schedules are never misread silently: every config value is type-checked, one clear sentence each.

Hostile values through the constructor (what ``from_dict`` and ``replace`` reach too), then whole
YAML files through ``from_yaml``, then values that must still load.
"""

import math

import numpy as np
import pytest

from scalecrafter_video import ConfigError, ScaleCrafterConfig

MID = {"mid_block.*": 2}  # a minimal table so that only the field under test is wrong


def _raises(fragments, **kwargs):
    with pytest.raises(ConfigError) as info:
        ScaleCrafterConfig(**{"dilation": MID, **kwargs})
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


NAN, INF = float("nan"), float("inf")

BOOLEANS = [
    (key, bad)
    for key in ("progressive", "attn_scale")
    for bad in ("false", "no", "true", "", 0, 1, 0.0, None, [True])
]


@pytest.mark.parametrize("key,bad", BOOLEANS)
def test_booleans_only_from_real_booleans(key, bad):
    _raises([f"{key} must be true or false", repr(bad) if bad is not None else "null"], **{key: bad})


SIZES = [
    (key, bad)
    for key in ("train_size", "target_size")
    for bad in ("32", "512x512", b"32", 32.5, [512.5, 512], True, [True, 512], [1, 2, 3], [512], [],
                0, -8, [0, 512], [512, -1], [512, "512"], [512, None], {"h": 512, "w": 512}, INF, [INF, 512],
                NAN, {512, 256})
]


@pytest.mark.parametrize("key,bad", SIZES)
def test_sizes_only_from_positive_integers(key, bad):
    _raises([f"{key} must be [height, width] of two positive integers", repr(bad)], **{key: bad})


FACTORS = [
    (key, bad)
    for key in ("dilation", "ndcfg_dilation")
    # Lists are left out on purpose: per-axis [h, w] factors may become valid later.
    for bad in (INF, -INF, NAN, "2", "two", True, False, None, 0.5, 0, -2, 10 ** 400)
]


@pytest.mark.parametrize("key,bad", FACTORS)
def test_dilation_factors_are_finite_numbers_at_least_one(key, bad):
    shown = "null" if bad is None else "(int)" if bad == 10 ** 400 else repr(bad)  # too big for a float
    _raises([f"{key}['mid_block.*'] must be a finite number >= 1", shown], **{key: {"mid_block.*": bad}})


@pytest.mark.parametrize("key", ["dilation", "ndcfg_dilation"])
@pytest.mark.parametrize("bad,fragment", [
    ([2], "must be a mapping of module glob -> factor"),
    ("mid_block.*: 2", "must be a mapping of module glob -> factor"),
    (2, "must be a mapping of module glob -> factor"),
    ({1: 2}, "keys must be module-name globs (strings), got 1 (int)"),
    ({None: 2}, "keys must be module-name globs (strings), got null"),
])
def test_dilation_tables_are_mappings_of_globs(key, bad, fragment):
    _raises([key, fragment], **{key: bad})


def _factor(value):
    """One factor through the public door: the value a one-entry dilation table keeps."""
    return ScaleCrafterConfig.from_dict({"dilation": {"x": value}}).dilation["x"]


def test_factor_check_is_per_value():
    """The single-factor rule stands apart from the table, ready to be applied per axis later."""
    assert _factor(2) == 2.0 and _factor(2.5) == 2.5 and _factor(np.float32(3)) == 3.0
    with pytest.raises(ConfigError, match=r"x'\] must be a finite number >= 1"):
        _factor(INF)


TAUS = [
    (key, bad)
    for key in ("dilate_tau", "ndcfg_tau", "disperse_tau")
    for bad in (True, False, "0.7", "", None, INF, NAN, [0.5])
]


@pytest.mark.parametrize("key,bad", TAUS)
def test_taus_are_real_numbers(key, bad):
    _raises([f"{key} must be a number in [0, 1]", "null" if bad is None else repr(bad)], **{key: bad})


@pytest.mark.parametrize("key", ["dilate_tau", "ndcfg_tau", "disperse_tau"])
@pytest.mark.parametrize("bad", [-0.1, 1.5, 35, -1])
def test_taus_out_of_range(key, bad):
    _raises([f"{key} = ", "fractions of the trajectory in [0, 1]"], **{key: bad})


DISPERSE_NUMBERS = [
    ("disperse_kernel", bad, "an odd integer >= 5") for bad in ("5", True, 5.0, 4, 3, 7.5, None, -5)
] + [
    ("disperse_scale", bad, "an integer >= 1") for bad in ("2", True, False, 0, -1, 2.5, 2.0, None)
] + [
    ("disperse_input_size", bad, "an integer >= 3") for bad in ("3", True, 2, 3.0, None, 0)
] + [
    ("disperse_eta", bad, "a finite number >= 0") for bad in ("abc", "0.05", True, -1, -0.01, INF, NAN, None)
]


@pytest.mark.parametrize("key,bad,expected", DISPERSE_NUMBERS)
def test_disperse_numbers(key, bad, expected):
    _raises([f"{key} must be {expected}", "null" if bad is None else repr(bad)], **{key: bad})


@pytest.mark.parametrize("kwargs,fragments", [
    ({"method": "magic"}, ["method must be one of scalecrafter, direct, attn-sf", "'magic'"]),
    ({"method": 1}, ["method must be one of", "1 (int)"]),
    ({"method": None}, ["method must be one of", "null"]),
    ({"method": ["scalecrafter"]}, ["method must be one of", "['scalecrafter']"]),
    ({"name": 1}, ["name must be a string or null", "1 (int)"]),
    ({"name": True}, ["name must be a string or null", "True (a boolean)"]),
    ({"name": ["a"]}, ["name must be a string or null", "['a']"]),
    ({"vae_scale_factor": True}, ["vae_scale_factor must be a positive integer or null", "True"]),
    ({"vae_scale_factor": 0}, ["vae_scale_factor must be a positive integer or null", "0 (int)"]),
    ({"vae_scale_factor": 8.0}, ["vae_scale_factor must be a positive integer or null", "8.0"]),
    ({"vae_scale_factor": "8"}, ["vae_scale_factor must be a positive integer or null", "'8'"]),
    ({"num_train_timesteps": False}, ["num_train_timesteps must be a positive integer or null", "False"]),
    ({"num_train_timesteps": -1}, ["num_train_timesteps must be a positive integer or null", "-1"]),
    ({"num_train_timesteps": "1000"}, ["num_train_timesteps must be a positive integer or null", "'1000'"]),
    ({"num_train_timesteps": 1000.5}, ["num_train_timesteps must be a positive integer or null", "1000.5"]),
    ({"disperse": "down_blocks.*"}, ["disperse must be a list of module globs", "'down_blocks.*'"]),
    ({"disperse": None}, ["disperse must be a list of module globs", "null"]),
    ({"disperse": {"a": 1}}, ["disperse must be a list of module globs", "{'a': 1}"]),
    ({"disperse": [1]}, ["disperse entries must be module-name globs (strings)", "1 (int)"]),
    ({"disperse": ["mid_block.*", None]}, ["disperse entries must be module-name globs (strings)", "null"]),
    ({"disperse": ["mid_block.*", True]}, ["disperse entries must be module-name globs", "True"]),
])
def test_other_fields(kwargs, fragments):
    _raises(fragments, **kwargs)


def test_from_dict_and_replace_check_types_too():
    with pytest.raises(ConfigError, match="progressive must be true or false"):
        ScaleCrafterConfig.from_dict({"dilation": MID, "progressive": "false"})
    with pytest.raises(ConfigError, match="train_size must be"):
        ScaleCrafterConfig.from_dict({"dilation": MID}, train_size="32")
    good = ScaleCrafterConfig(dilation=MID)
    with pytest.raises(ConfigError, match="attn_scale must be true or false"):
        good.replace(attn_scale="no")
    with pytest.raises(ConfigError, match="disperse_scale must be an integer"):
        good.replace(disperse_scale="2")
    with pytest.raises(ConfigError, match="unknown config key"):
        ScaleCrafterConfig.from_dict({1: 2, "dilations": {}})


# ---------------------------------------------------------------------------------------- YAML files
@pytest.mark.parametrize("text,fragments", [
    ('dilation: {mid_block.*: 2}\nprogressive: "false"\n', ["progressive must be true or false", "'false'"]),
    ('dilation: {mid_block.*: 2}\nattn_scale: "no"\n', ["attn_scale must be true or false", "'no'"]),
    ('dilation: {mid_block.*: 2}\nprogressive: 0\n', ["progressive must be true or false", "0 (int)"]),
    ('dilation: {mid_block.*: 2}\nattn_scale: null\n', ["attn_scale must be true or false", "null"]),
    ('dilation: {mid_block.*: 2}\ntrain_size: "32"\n', ["train_size must be [height, width]", "'32'"]),
    ("dilation: {mid_block.*: 2}\ntarget_size: [1024, 1024, 3]\n", ["target_size must be", "[1024, 1024, 3]"]),
    ("dilation: {mid_block.*: 2}\ntrain_size: 512.5\n", ["train_size must be", "512.5"]),
    ("dilation: {mid_block.*: .inf}\n", ["dilation['mid_block.*'] must be a finite number >= 1", "inf"]),
    ("dilation: {mid_block.*: .nan}\n", ["dilation['mid_block.*'] must be a finite number >= 1", "nan"]),
    ("dilation: {mid_block.*: 2}\nndcfg_dilation: {mid_block.*: two}\n", ["ndcfg_dilation['mid_block.*']", "'two'"]),
    ("dilation: {mid_block.*: 2}\ndisperse_eta: abc\n", ["disperse_eta must be a finite number >= 0", "'abc'"]),
    ('dilation: {mid_block.*: 2}\ndisperse_kernel: "5"\n', ["disperse_kernel must be an odd integer >= 5", "'5'"]),
    ("dilation: {mid_block.*: 2}\ndisperse_scale: two\n", ["disperse_scale must be an integer >= 1", "'two'"]),
    ("dilation: {mid_block.*: 2}\ndisperse_input_size: 3.5\n", ["disperse_input_size must be an integer", "3.5"]),
    ("dilation: {mid_block.*: 2}\ndilate_tau: .inf\n", ["dilate_tau must be a number in [0, 1]", "inf"]),
    ('dilation: {mid_block.*: 2}\ndilate_tau: "0.7"\n', ["dilate_tau must be a number in [0, 1]", "'0.7'"]),
    ("dilation: {mid_block.*: 2}\ndisperse: [1, 2]\n", ["disperse entries must be module-name globs", "1 (int)"]),
    ("dilation: {mid_block.*: 2}\ndisperse: mid_block.*\n", ["disperse must be a list of module globs"]),
    ("dilation: {mid_block.*: 2}\nmethod: 3\n", ["method must be one of", "3 (int)"]),
    ("dilation: {mid_block.*: 2}\nname: 7\n", ["name must be a string or null", "7 (int)"]),
    ("dilation: {mid_block.*: 2}\nvae_scale_factor: true\n", ["vae_scale_factor must be a positive integer", "True"]),
    ("", ["is an empty schedule", "method: direct"]),
    ("# only a comment\n", ["is an empty schedule"]),
    ("~\n", ["is an empty schedule"]),
    ("null\n", ["is an empty schedule"]),
    ("{}\n", ["is an empty schedule"]),
    ("- mid_block.*\n- 2\n", ["must be a mapping", "list"]),
    ("42\n", ["must be a mapping", "int"]),
    ('"a string"\n', ["must be a mapping", "str"]),
    ("train_size: [512, 512]\n", ["dilates nothing", "use method: direct for Direct-Inf"]),
    ("method: scalecrafter\ndilation: {}\n", ["dilates nothing", "use method: direct for Direct-Inf"]),
    ("dilation: ~\nndcfg_tau: 0\n", ["dilates nothing"]),
    ("dilation: {}\nattn_scale: true\n", ["dilates nothing", "method: attn-sf"]),
    ("base: 5\n", ["base must be a preset name", "5 (int)"]),
    ("base: ~\n", ["base must be a preset name", "null"]),
    ('base: sd1.5/1024x1024\nprogressive: "yes"\n', ["progressive must be true or false", "'yes'"]),
    ("base: sd1.5/1024x1024\ntrain_size: '512'\n", ["train_size must be", "'512'"]),
])
def test_hostile_yaml_files(tmp_path, text, fragments):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        ScaleCrafterConfig.from_yaml(path)
    message = str(info.value)
    assert "\n" not in message
    assert "bad.yaml" in message, message  # names the file
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# ---------------------------------------------------------------------------------------- still valid
def _load(tmp_path, text, **overrides):
    path = tmp_path / "good.yaml"
    path.write_text(text)
    return ScaleCrafterConfig.from_yaml(path, **overrides)


def test_yaml_ints_floats_and_booleans_still_load(tmp_path):
    cfg = _load(tmp_path, (
        "train_size: [512, 512]\ntarget_size: 1024\n"
        "dilation: {down_blocks.1.*: 2, mid_block.*: 2.5}\ndilate_tau: 1\n"
        "progressive: true\nattn_scale: false\n"
        "ndcfg_dilation: {mid_block.*: 1}\nndcfg_tau: 0.5\n"
        "disperse: [mid_block.*]\ndisperse_tau: 0\ndisperse_kernel: 7\ndisperse_eta: 0\n"
        "disperse_scale: 1\ndisperse_input_size: 5\nvae_scale_factor: 8\nnum_train_timesteps: 1000\n"
    ))
    assert cfg.train_size == (512, 512) and cfg.target_size == (1024, 1024)
    assert cfg.dilation == {"down_blocks.1.*": 2.0, "mid_block.*": 2.5}
    assert all(type(v) is float for v in (*cfg.dilation.values(), cfg.dilate_tau, cfg.disperse_eta))
    assert cfg.progressive is True and cfg.attn_scale is False
    assert cfg.ndcfg_dilation == {"mid_block.*": 1.0} and cfg.ndcfg_tau == 0.5
    assert (cfg.disperse_kernel, cfg.disperse_scale, cfg.disperse_input_size) == (7, 1, 5)
    assert (cfg.vae_scale_factor, cfg.num_train_timesteps, cfg.name) == (8, 1000, "good")


def test_yaml_11_booleans_and_interpolation_still_load(tmp_path):
    cfg = _load(tmp_path, "dilation: {mid_block.*: 2}\nprogressive: yes\nattn_scale: off\n"
                          "dilate_tau: 0.5\nndcfg_tau: ${dilate_tau}\n")
    assert cfg.progressive is True and cfg.attn_scale is False and cfg.ndcfg_tau == 0.5


@pytest.mark.parametrize("text,method", [
    ("method: direct\n", "direct"),
    ("method: direct\ntrain_size: [512, 512]\n", "direct"),
    ("method: attn-sf\ntrain_size: 512\n", "attn-sf"),
    ("ndcfg_dilation: {mid_block.*: 2}\nndcfg_tau: 0.5\n", "scalecrafter"),  # damped pass only
    ("disperse: [mid_block.*]\ndisperse_tau: 0.5\n", "scalecrafter"),
    ("name: mine\ndilation: {mid_block.*: 2}\n", "scalecrafter"),
])
def test_meaningful_small_schedules_still_load(tmp_path, text, method):
    assert _load(tmp_path, text).method == method


def test_cli_method_override_makes_an_empty_table_legitimate(tmp_path):
    assert _load(tmp_path, "train_size: [512, 512]\n", method="direct").method == "direct"


def test_base_presets_still_load(tmp_path):
    base = ScaleCrafterConfig.preset("sd1.5/2048x2048")
    cfg = _load(tmp_path, "base: sd1.5/2048x2048\ndilate_tau: 0.5\nprogressive: false\n")
    assert cfg.dilation == base.dilation and cfg.ndcfg_dilation == base.ndcfg_dilation
    assert cfg.dilate_tau == 0.5 and cfg.progressive is False and cfg.name == "good"
    assert cfg.train_size == base.train_size == (512, 512)


def test_python_built_configs_keep_working():
    assert ScaleCrafterConfig().dilation == {}  # code may build an empty schedule
    assert ScaleCrafterConfig.from_dict(None).method == "scalecrafter"
    assert ScaleCrafterConfig.from_dict({}).dilation == {}
    one_x = ScaleCrafterConfig.auto(256, 256)  # the automatic schedule at 1x is an empty table
    assert one_x.dilation == {} and not one_x.uses_redilation
    cfg = ScaleCrafterConfig(
        train_size=[np.int64(320), 576], target_size=(640.0, 1152), dilation={"mid_block.*": np.float64(2)},
        dilate_tau=np.float32(0.5), disperse_kernel=np.int32(5), vae_scale_factor=np.int64(8), disperse=("a.*",),
    )
    assert cfg.train_size == (320, 576) and cfg.target_size == (640, 1152)
    assert all(type(v) is int for v in (*cfg.train_size, *cfg.target_size, cfg.disperse_kernel, cfg.vae_scale_factor))
    assert cfg.disperse == ["a.*"] and type(cfg.dilation["mid_block.*"]) is float
    again = cfg.replace()  # validation re-runs on validated values
    assert again.to_dict() == cfg.to_dict()
    assert cfg.replace(train_size=512).train_size == (512, 512)
    assert math.isclose(cfg.replace(dilate_tau=1).dilate_tau, 1.0)
