"""torch.compile on a ScaleCrafter UNet: one graph per phase, none per step, outputs as eager.

Graphs are counted with a custom Dynamo backend that records each graph it is handed and runs it
as traced (no code generation, so the test is cheap on the CPU). A *phase* is what the engine
decides per UNet call: the batch size, the ``{layer: (factor, dispersed)}`` actions (plain;
dilated at each progressive factor; the damped unconditional pass) and how many down blocks the
damped pass takes from the main pass.
"""

from __future__ import annotations

import pytest
import torch

from scalecrafter_video import ScaleCrafterConfig, apply_scalecrafter, denoising_step, remove_scalecrafter
from scalecrafter_video.engine import compile_unet, scalecrafter_state

torch.set_num_threads(1)
dynamo = pytest.importorskip("torch._dynamo")

STEPS = 8
CONFIG = dict(train_size=(16, 16), dilation={"down_blocks.1.*": 2, "mid_block.*": 3, "up_blocks.0.*": 2.5},
              dilate_tau=0.75, progressive=True, ndcfg_tau=0.375, ndcfg_dilation={"mid_block.*": 2},
              vae_scale_factor=1)


def small_unet():
    """Two levels, one layer per block: the smallest UNet2DConditionModel with every block kind
    ScaleCrafter touches (resnets, a downsampler, an upsampler, the mid block, cross-attention)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=8, cross_attention_dim=16, attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    ).eval()


class GraphCounter:
    """A Dynamo backend that counts the graphs it compiles and runs them as traced."""

    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


X = torch.randn(1, 4, 24, 24, generator=torch.Generator().manual_seed(0)).repeat(2, 1, 1, 1)
EMB = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
TIMESTEPS = torch.linspace(999, 1, STEPS).round().long()


def trajectory(unet):
    """One CFG trajectory's UNet outputs (a fixed input per step: only the schedule changes)."""
    outs = []
    with torch.no_grad():
        for i in range(STEPS):
            with denoising_step(i, STEPS, cfg=True):
                outs.append(unet(X, TIMESTEPS[i], encoder_hidden_states=EMB).sample)
    return outs


def phases_of(unet):
    """The distinct (batch, actions) of an eager trajectory, and its number of UNet calls."""
    state, seen, calls = scalecrafter_state(unet), set(), []

    def record(module, args, kwargs):
        calls.append(1)
        seen.add((args[0].shape[0], frozenset(state.actions.items()), state.reuse_blocks))

    handle = unet.register_forward_pre_hook(record, with_kwargs=True)  # after the engine's own
    try:
        outs = trajectory(unet)
    finally:
        handle.remove()
    return outs, seen, len(calls)


@pytest.fixture(autouse=True)
def fresh_dynamo():
    dynamo.reset()
    yield
    dynamo.reset()


def _check(compiled, eager, phases, calls, counter):
    from torch._dynamo.utils import counters

    counters.clear()
    outs = trajectory(compiled)
    for a, b in zip(outs, eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # Bounded: one graph per phase, fewer than the UNet calls.
    assert counter.graphs == len(phases), (counter.graphs, phases)
    assert len(phases) < calls
    assert not counters["graph_break"], dict(counters["graph_break"])
    first = counter.graphs
    again = trajectory(compiled)  # a second trajectory compiles nothing new
    assert counter.graphs == first
    for a, b in zip(again, eager):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_compile_after_apply_has_one_graph_per_phase():
    unet = small_unet()
    apply_scalecrafter(unet, ScaleCrafterConfig.from_dict(CONFIG))
    eager, phases, calls = phases_of(unet)
    # plain; damped (batch 1, mid at 2); dilated, progressive over the 6-step window: mid 3 and up 2.5
    # run at 3 for two steps, then both at 2 (down_blocks.1 stays at 2), keeping down block 0 for the
    # damped pass while ndcfg is on (steps 0-2) and not after: 3 main-pass phases in the window
    assert len(phases) == 5 and calls == 11  # 8 steps + 3 damped passes
    counter = GraphCounter()
    _check(torch.compile(unet, backend=counter), eager, phases, calls, counter)


def test_compile_unet_before_apply_and_after_remove():
    unet = small_unet()
    config = ScaleCrafterConfig.from_dict(CONFIG)
    apply_scalecrafter(unet, config)
    eager, phases, calls = phases_of(unet)
    remove_scalecrafter(unet)
    plain = trajectory(unet)

    counter = GraphCounter()
    assert compile_unet(unet, backend=counter) is unet  # in place: same module, same state_dict keys
    apply_scalecrafter(unet, config)
    _check(unet, eager, phases, calls, counter)
    remove_scalecrafter(unet)
    before = counter.graphs
    for a, b in zip(trajectory(unet), plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert counter.graphs == before + 1  # the plain UNet without hooks: one more graph


def test_apply_to_a_compiled_wrapper_patches_the_original():
    unet = small_unet()
    wrapper = torch.compile(unet, backend=GraphCounter())
    apply_scalecrafter(wrapper, ScaleCrafterConfig.from_dict(CONFIG))
    assert scalecrafter_state(wrapper) is scalecrafter_state(unet) is not None
    assert "_conv_forward" in unet.mid_block.resnets[0].conv1.__dict__
    remove_scalecrafter(wrapper)
    assert scalecrafter_state(unet) is None and "_conv_forward" not in unet.mid_block.resnets[0].conv1.__dict__
