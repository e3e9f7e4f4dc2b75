"""Smoke tests for the tiny video pipelines of the ``tiny`` fixture (conftest.py): each runs its own __call__
end to end on CPU and reloads offline from its save_pretrained folder with identical output."""

import numpy as np
import pytest
import torch


FRAMES, STEPS, SIZE = 2, 2, 16  # native: latent 8x8, pixels 16x16


def _gen():
    return torch.Generator().manual_seed(0)


def _call_text(pipe, tiny=None):
    return pipe("a cat", num_frames=FRAMES, num_inference_steps=STEPS, guidance_scale=2.0, height=SIZE, width=SIZE,
                output_type="np", generator=_gen()).frames


def _call_svd(pipe, tiny):
    return pipe(tiny.image((SIZE, SIZE)), height=SIZE, width=SIZE, num_frames=FRAMES, num_inference_steps=STEPS,
                decode_chunk_size=FRAMES, motion_bucket_id=127, fps=7, noise_aug_strength=0.02,
                min_guidance_scale=1.0, max_guidance_scale=3.0, output_type="np", generator=_gen()).frames


def _call_i2vgenxl(pipe, tiny):
    # I2VGenXL encodes the image with vae latent_dist.sample() WITHOUT the generator: seed the global RNG.
    # clip_skip=None: its default clip_skip=1 reads text_encoder.text_model, which transformers 5 removed.
    torch.manual_seed(0)
    return pipe("a cat", image=tiny.image((SIZE, SIZE)), height=SIZE, width=SIZE, num_frames=FRAMES,
                num_inference_steps=STEPS, guidance_scale=2.0, clip_skip=None, output_type="np",
                generator=_gen()).frames


CASES = {
    "animatediff": ("animatediff_pipeline", "animatediff_folder", "AnimateDiffPipeline", _call_text),
    "animatediff_sdxl": ("animatediff_sdxl_pipeline", "animatediff_sdxl_folder", "AnimateDiffSDXLPipeline",
                         _call_text),
    "svd": ("svd_pipeline", "svd_folder", "StableVideoDiffusionPipeline", _call_svd),
    "i2vgenxl": ("i2vgenxl_pipeline", "i2vgenxl_folder", "I2VGenXLPipeline", _call_i2vgenxl),
}


@pytest.mark.parametrize("name", list(CASES))
def test_tiny_video_pipeline_runs_and_reloads(name, tmp_path, tiny):
    import diffusers

    build, folder_fn, cls_name, call = CASES[name]
    pipe = getattr(tiny, build)()
    assert type(pipe).__name__ == cls_name
    assert not [n for n, p in pipe.unet.named_parameters() if p.ndim > 1 and torch.count_nonzero(p) == 0]
    frames = call(pipe, tiny)
    assert frames.shape == (1, FRAMES, SIZE, SIZE, 3)
    assert np.isfinite(frames).all() and frames.std() > 0

    folder = getattr(tiny, folder_fn)(tmp_path / name)
    again = getattr(diffusers, cls_name).from_pretrained(folder)
    again.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(call(again, tiny), frames)


def test_sd15_folder_plus_motion_adapter_gives_the_tiny_animatediff(tmp_path, tiny):
    from diffusers import AnimateDiffPipeline, MotionAdapter, UNetMotionModel

    sd = tiny.sd15_folder_for_animatediff(tmp_path / "sd", seed=0)
    adapter = tiny.motion_adapter_folder(tmp_path / "adapter", seed=0)
    pipe = AnimateDiffPipeline.from_pretrained(sd, motion_adapter=MotionAdapter.from_pretrained(adapter))
    pipe.set_progress_bar_config(disable=True)
    assert isinstance(pipe.unet, UNetMotionModel)
    np.testing.assert_array_equal(_call_text(pipe), _call_text(tiny.animatediff_pipeline()))


def test_tiny_image(tiny):
    img = tiny.image((24, 16), seed=3)
    assert img.mode == "RGB" and img.size == (24, 16)
    assert np.asarray(img).std() > 0
