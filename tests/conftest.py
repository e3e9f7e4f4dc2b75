"""Shared fixtures of the test suite. Test modules ask for these by name; none imports a helper module.

Sections:
  1. paths and thread limits      ``repo_root``, the autouse ``one_thread`` (torch + OpenBLAS)
  2. subprocess environment        ``subprocess_env``: for tests that run the CLI / scripts in a new process
  3. tiny diffusers models         ``tiny`` (builders of every family), ``tiny_t2v_folder``
  4. LDM checkpoints               ``ldm`` (LVDM / VideoCrafter configs, UNets, random checkpoints),
                                   ``lvdm_folder``, ``videocrafter_folder``
  5. FVD                           ``tiny_i3d``, ``tiny_i3d_weights``, ``videos`` (small video files)

Everything is seeded random weights built in code: no hub, no network. Builders are methods of
session-scoped objects, so a test that needs several models (or a parameter) calls them; expensive
folders that several modules share (``tiny_t2v_folder``, ``lvdm_folder``, ``videocrafter_folder``) are
session-scoped fixtures built once.
"""

from __future__ import annotations

import copy
import ctypes
import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent  # the checkout these tests live in
DATA = Path(__file__).resolve().parent / "data"

# ============================================================================ 1. paths and thread limits
# The test models are tiny: one thread per process is faster than two fighting over OpenMP
# spin-waits, and keeps the suite steady on a shared 2-core machine.
torch.set_num_threads(1)

# diffusers and transformers give their library logger a stream handler on first use, bound to the
# sys.stderr of that moment. Created inside a test that captures output (capsys), it would keep that
# test's stream, closed afterwards, and every later warning would print "--- Logging error ---" into
# whichever test runs then. Creating them here binds them to the session's stderr.
import diffusers.utils.logging  # noqa: E402
import transformers.utils.logging  # noqa: E402

diffusers.utils.logging.get_logger("diffusers")
transformers.utils.logging.get_logger("transformers")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root of the checkout the tests live in (not wherever the package is installed)."""
    return REPO_ROOT


def _openblas_thread_controls():
    """(get, set) function pairs of the OpenBLAS builds loaded in this process (Linux; else none)."""
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return []
    controls = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for suffix in ("64_", "", "_64"):
            for prefix in ("scipy_openblas_", "openblas_"):
                get = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    controls.append((get, put))
                    break
            else:
                continue
            break
    return controls


@pytest.fixture(autouse=True)
def one_thread():
    """Run each test with one torch and one BLAS thread: on small shared CPUs, spinning worker
    threads make 400x400 eigendecompositions 10-50x slower. Results do not depend on it."""
    before = torch.get_num_threads()
    blas = [(put, get()) for get, put in _openblas_thread_controls()]
    torch.set_num_threads(1)
    for put, _ in blas:
        put(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        for put, n in blas:
            put(n)


# ============================================================================ 2. subprocess environment
@pytest.fixture(scope="session")
def load_script(repo_root):
    """``load_script("bench_quality")``: a script of ``scripts/`` as a module, so a test can patch its
    functions (``runpy`` hands back a copy of the globals, which the functions do not read)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"{name}_under_test", repo_root / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for a child process that runs this checkout's package (the CLI, torchrun workers,
    the scripts): this checkout first on PYTHONPATH, one thread per process, no warning noise.
    A fresh dict per test; add to it freely."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return env


# ============================================================================ 3. tiny diffusers models
# What the tiny video pipelines do inside (observed; tests of the engine rely on it). ------------------------
#
# UNet-call facts, observed with `pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)` during __call__ with
# CFG on (guidance 2.0; SVD min/max_guidance_scale 1.0/3.0), batch 1, F=3 frames, 3 steps, native 16x16 pixels
# (h = w = 8 latent; at 2x everything spatial doubles: h = w = 16). B2 = 2 = CFG batch, halves ordered
# [uncond, cond]. In every pipeline `sample` and the timestep are passed POSITIONALLY (args[0], args[1]);
# everything else by keyword.
#
#   AnimateDiffPipeline -> UNetMotionModel.forward(sample, timestep, encoder_hidden_states, timestep_cond, ...)
#     sample                  (2, 4, F, h, w)   = (batch, channels, frames, h, w)
#     timestep                0-d int64 tensor; DDIM (steps_offset=1, leading): 3 steps 667, 334, 1; 2 steps 501, 1
#     encoder_hidden_states   (2*F, 16, 32)  ALREADY repeated per frame by the pipeline
#                             (cat([neg, pos]).repeat_interleave(F, 0): F uncond rows, then F cond rows)
#     added_cond_kwargs None, cross_attention_kwargs None (no return_dict kwarg; pipeline uses `.sample`)
#     pipe.do_classifier_free_guidance: True (Python bool); scheduler.step_index: no such attribute
#
#   AnimateDiffSDXLPipeline -> UNetMotionModel.forward(sample, timestep, encoder_hidden_states, timestep_cond, ...)
#     sample                  (2, 4, F, h, w)   = (batch, channels, frames, h, w)
#     timestep                0-d int64 tensor; 667, 334, 1 (DDIM as above)
#     encoder_hidden_states   (2*F, 16, 64)  per frame (repeat_interleave F); 64 = text_encoder 32 + text_encoder_2 32
#     added_cond_kwargs       {"text_embeds": (2, 32) pooled, per video (NOT per frame),
#                              "time_ids": (2, 6) = [H, W, 0, 0, H, W] in PIXELS, e.g. [16,16,0,0,16,16]; 2x: 32s}
#     timestep_cond None, cross_attention_kwargs None, return_dict False
#     pipe.do_classifier_free_guidance: True (Python bool); scheduler.step_index: no such attribute
#
#   StableVideoDiffusionPipeline -> UNetSpatioTemporalConditionModel.forward(sample, timestep, encoder_hidden_states,
#                                                                            added_time_ids, return_dict)
#     sample                  (2, F, 8, h, w)   = (batch, FRAMES, channels, h, w); channels 8 = 4 noisy latents
#                             (already scale_model_input-ed) + 4 image latents (vae latent_dist.mode(), NOT multiplied
#                             by scaling_factor; uncond half all zeros), concatenated on dim 2
#     timestep                0-d float32 tensor, continuous = 0.25*ln(sigma): 3 steps 1.6378, 0.6867, -1.5537
#                             (karras sigmas 700 -> 0.002)
#     encoder_hidden_states   (2, 1, 32)  CLIP image embedding, per video (UNet repeats it per frame); uncond = zeros
#     added_time_ids          (2, 3) = [fps-1, motion_bucket_id, noise_aug_strength] = [6, 127, 0.02] for both halves
#     return_dict False
#     pipe.do_classifier_free_guidance: 0-d bool TENSOR (tensor(True)): during the loop pipe.guidance_scale is the
#         per-frame tensor linspace(min, max, F) of shape (1, F, 1, 1, 1); scheduler.step_index: 0, 1, 2 (an int,
#         already set by scale_model_input at UNet-call time)
#
#   I2VGenXLPipeline -> I2VGenXLUNet.forward(sample, timestep, fps, image_latents, image_embeddings,
#                                            encoder_hidden_states, ...)   NB 3rd/4th params are fps, image_latents
#     sample                  (2, 4, F, h, w)   = (batch, channels, frames, h, w)
#     timestep                0-d int64 tensor; 667, 334, 1 (DDIM)
#     encoder_hidden_states   (2, 16, 32)  text, per video (NOT per frame)
#     fps                     (2,) int64 [16, 16] (target_fps)
#     image_latents           (2, 4, F, h, w): frame 0 = vae latent * scaling_factor, frames k>=1 = constant k/(F-1);
#                             identical in both CFG halves
#     image_embeddings        (2, 1, 32) CLIP image embedding; uncond half zeros
#     cross_attention_kwargs None, return_dict False
#     (inside, the spatial cross-attention context is 16 text + 64 image-latent + 4 image-embedding = 84 tokens)
#     pipe.do_classifier_free_guidance: True (Python bool); scheduler.step_index: no such attribute
#
# Temporal modules (module-name prefixes, `*` = any index). "Over frames": the Attention's query is
# (batch*h*w, F, C), seen in hooks. Spatial attentions (`*.attentions.*.transformer_blocks.*.attn1/attn2`) get
# (batch*F, h*w, C) and are not listed.
#
#   AnimateDiff (SD1.5 and SDXL): AnimateDiffTransformer3D at
#       down_blocks.*.motion_modules.*, up_blocks.*.motion_modules.*, mid_block.motion_modules.* (SD1.5 only; the SDXL
#       adapter has use_motion_mid_block=False)
#     over frames: <prefix>.transformer_blocks.*.attn1 AND .attn2 (both SELF-attention over frames, kv None)
#     temporal-kernel convs: none (no Conv3d/Conv1d in the UNet or VAE)
#     tiny counts: SD1.5 21 motion modules (8 down, 1 mid, 12 up); SDXL 15 (6 down, 9 up)
#
#   SVD: TransformerSpatioTemporalModel at {down_blocks.*, mid_block, up_blocks.*}.attentions.*
#     over frames: <...>.attentions.*.temporal_transformer_blocks.*.attn1 (self) and .attn2 (CROSS-attention, query
#         over frames, kv = image embedding (batch*h*w, 1, 32)); TemporalBasicTransformerBlock; frame position via
#         <...>.attentions.*.time_pos_embed / time_proj
#     temporal-kernel convs (Conv3d kernel (3,1,1), padding (1,0,0)):
#         {down_blocks.*, mid_block, up_blocks.*}.resnets.*.temporal_res_block.conv1 / .conv2 (TemporalResnetBlock
#         inside SpatioTemporalResBlock, whose 2D half is .spatial_res_block)
#     spatial/temporal blenders (AlphaBlender, no conv): <...>.attentions.*.time_mixer, <...>.resnets.*.time_mixer
#     VAE (AutoencoderKLTemporalDecoder) temporal convs, Conv3d (3,1,1): decoder.time_conv_out,
#         decoder.mid_block.resnets.*.temporal_res_block.conv1/conv2,
#         decoder.up_blocks.*.resnets.*.temporal_res_block.conv1/conv2
#
#   I2VGenXL:
#     over frames (all SELF-attention, kv None):
#         image_latents_temporal_encoder.attn1 (I2VGenXLTransformerTemporalEncoder on the image latents, C = 4)
#         transformer_in.transformer_blocks.*.attn1 / .attn2 (TransformerTemporalModel after conv_in)
#         {down_blocks.*, mid_block, up_blocks.*}.temp_attentions.*.transformer_blocks.*.attn1 / .attn2
#     temporal-kernel convs (Conv3d kernel (3,1,1), padding (1,0,0)), TemporalConvLayer at
#         {down_blocks.*, mid_block, up_blocks.*}.temp_convs.*: conv1.2, conv2.3, conv3.3, conv4.3
#         (conv1 = Sequential(GroupNorm, SiLU, Conv3d); conv2..4 = Sequential(GroupNorm, SiLU, Dropout, Conv3d))
#     VAE: plain AutoencoderKL, no temporal layers.


class TinyModels:
    """Builders of tiny seeded random-weight diffusers models and pipelines of every family.

    All pipelines are native at latent 8x8 = pixels 16x16 through a 2x VAE, and every UNet has had its
    zero-initialised weights randomised (after a motion adapter was merged), so every layer influences
    the output. ``*_folder(folder, seed)`` methods ``save_pretrained`` into ``folder`` and return it;
    ``<PipelineClass>.from_pretrained(folder)`` gives bit-identical output.

    Video-pipeline gotchas (the tests rely on them):
      * I2VGenXLPipeline.__call__ defaults height=704, width=1280: always pass height/width; its default
        clip_skip=1 reads ``text_encoder.text_model`` (gone in transformers 5): pass clip_skip=None; it
        encodes the image without the generator: call torch.manual_seed(...) first.
      * SVD always resizes the conditioning image to 224x224 for CLIP, so its image encoder is
        image_size=224, patch 32 (I2VGenXL: 32, patch 8). Its UNet and temporal VAE hard-wire
        GroupNorm(32 groups): channels are multiples of 32.
      * AnimateDiff motion modules have motion_max_seq_length=32 (at most 32 frames).
    """

    def __init__(self, scratch: Path):
        self.scratch = scratch

    # ------------------------------------------------------------------ parts
    @staticmethod
    def randomize_zero_inits(model) -> None:
        """diffusers zero-initialises output convs (e.g. TemporalConvLayer.conv4): give them weights so
        that every layer influences the output and the tests can see a change."""
        gen = torch.Generator().manual_seed(1234)
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim > 1 and torch.count_nonzero(p) == 0:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.05)

    def unet3d(self, seed: int = 0, sample_size: int = 8, channels=(16, 16, 32, 32), cross_dim: int = 32):
        from diffusers import UNet3DConditionModel

        torch.manual_seed(seed)
        unet = UNet3DConditionModel(
            sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=channels,
            layers_per_block=2, norm_num_groups=8, cross_attention_dim=cross_dim, attention_head_dim=4,
        )
        self.randomize_zero_inits(unet)
        return unet.eval()

    def unet2d(self, seed: int = 0, sample_size: int = 8, channels=(16, 16, 32, 32), cross_dim: int = 32, **kw):
        """SD 1.5 / 2.1 block layout by default (4 levels, the 50 SD conv names)."""
        from diffusers import UNet2DConditionModel

        torch.manual_seed(seed)
        blocks = len(channels)
        unet = UNet2DConditionModel(
            sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=channels,
            layers_per_block=2, norm_num_groups=8, cross_attention_dim=cross_dim, attention_head_dim=4,
            down_block_types=("CrossAttnDownBlock2D",) * (blocks - 1) + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * (blocks - 1), **kw,
        )
        self.randomize_zero_inits(unet)
        return unet.eval()

    def tokenizer(self):
        """A character-level CLIPTokenizer (vocabulary a-z, 0-9 and ``.,!``; no merges), a fresh object
        per call from files written once into the session's scratch folder."""
        from transformers import CLIPTokenizer

        folder = self.scratch / "clip-tokenizer"
        if not (folder / "merges.txt").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!")
            vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
            for ch in chars:
                vocab[ch] = len(vocab)
                vocab[ch + "</w>"] = len(vocab)
            (folder / "vocab.json").write_text(json.dumps(vocab))
            (folder / "merges.txt").write_text("#version: 0.2\n")
        return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16,
                             unk_token="<|endoftext|>", pad_token="<|endoftext|>")

    @staticmethod
    def text_encoder(seed: int = 0, dim: int = 32, vocab_size: int = 80):
        from transformers import CLIPTextConfig, CLIPTextModel

        torch.manual_seed(seed)
        cfg = CLIPTextConfig(vocab_size=vocab_size, hidden_size=dim, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                             pad_token_id=1)
        return CLIPTextModel(cfg).eval()

    @staticmethod
    def text_encoder_2(seed: int = 0, dim: int = 32, projection_dim: int = 32):
        """The SDXL second text encoder (with projection)."""
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        torch.manual_seed(seed + 1)
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=80, hidden_size=dim, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1,
            projection_dim=projection_dim)).eval()

    @staticmethod
    def vae(seed: int = 0):
        from diffusers import AutoencoderKL

        torch.manual_seed(seed)
        return AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
            norm_num_groups=8, layers_per_block=1, sample_size=16,
        ).eval()

    @staticmethod
    def scheduler():
        from diffusers import DDIMScheduler

        return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                             clip_sample=False, set_alpha_to_one=False, steps_offset=1)

    @staticmethod
    def image(size=(16, 16), seed: int = 0):
        """A smooth-ish seeded RGB PIL image, (width, height) = size."""
        from PIL import Image

        w, h = size
        gen = torch.Generator().manual_seed(seed)
        low = torch.rand(1, 3, 4, 4, generator=gen)
        img = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0]
        img = img + 0.1 * torch.rand(3, h, w, generator=gen)
        arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        return Image.fromarray(arr, mode="RGB")

    @staticmethod
    def image_encoder(seed: int = 0, image_size: int = 32, patch_size: int = 8, projection_dim: int = 32):
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        torch.manual_seed(seed + 4)
        cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, projection_dim=projection_dim,
                               num_hidden_layers=2, num_attention_heads=2, image_size=image_size, patch_size=patch_size)
        return CLIPVisionModelWithProjection(cfg).eval()

    @staticmethod
    def image_processor(size: int = 32):
        from transformers import CLIPImageProcessor

        return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                  do_center_crop=True, do_resize=True, do_normalize=True)

    @staticmethod
    def _quiet(pipe):
        pipe.set_progress_bar_config(disable=True)
        return pipe

    # ------------------------------------------------------------------ text-to-video (ModelScope layout) and images
    def t2v_components(self, seed: int = 0) -> dict:
        """Parts of a TextToVideoSDPipeline: unet, vae, text_encoder, tokenizer, scheduler."""
        return dict(unet=self.unet3d(seed, sample_size=8), vae=self.vae(seed), text_encoder=self.text_encoder(seed),
                    tokenizer=self.tokenizer(), scheduler=self.scheduler())

    def t2v_folder(self, folder: Path, seed: int = 0) -> Path:
        """A TextToVideoSDPipeline folder (native 16x16 pixels: latent 8x8 with a 2x VAE), with defaults
        of 3 frames and 4 steps in its ``scalecrafter_video.json``."""
        from diffusers import TextToVideoSDPipeline

        TextToVideoSDPipeline(**self.t2v_components(seed)).save_pretrained(folder)
        (folder / "scalecrafter_video.json").write_text(json.dumps({"num_frames": 3, "num_inference_steps": 4}))
        return folder

    def sd_pipeline(self, seed: int = 0):
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline(
            vae=self.vae(seed), text_encoder=self.text_encoder(seed), tokenizer=self.tokenizer(),
            unet=self.unet2d(seed), scheduler=self.scheduler(), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )

    def sdxl_pipeline(self, seed: int = 0):
        """SDXL layout: 3 levels (no downsampler at the deepest), two text encoders, text-time conditioning."""
        from diffusers import StableDiffusionXLPipeline

        unet = self.unet2d(seed, channels=(16, 32, 32), cross_dim=64, addition_embed_type="text_time",
                           addition_time_embed_dim=8, projection_class_embeddings_input_dim=8 * 6 + 32)
        te2 = self.text_encoder_2(seed)
        tok = self.tokenizer()
        return StableDiffusionXLPipeline(vae=self.vae(seed), text_encoder=self.text_encoder(seed), text_encoder_2=te2,
                                         tokenizer=tok, tokenizer_2=tok, unet=unet, scheduler=self.scheduler(),
                                         force_zeros_for_empty_prompt=False)

    # ------------------------------------------------------------------ AnimateDiff (SD 1.5)
    def motion_adapter(self, seed: int = 0):
        """Motion adapter for the SD 1.5 layout of ``unet2d()``: 4 levels (16, 16, 32, 32), 2 layers per
        block, with a motion mid block (like the AnimateDiff v1.5 adapters)."""
        from diffusers import MotionAdapter

        torch.manual_seed(seed + 2)
        adapter = MotionAdapter(block_out_channels=(16, 16, 32, 32), motion_layers_per_block=2,
                                motion_num_attention_heads=2, motion_norm_num_groups=8, motion_max_seq_length=32,
                                use_motion_mid_block=True)
        self.randomize_zero_inits(adapter)  # proj_out of every motion transformer is zero-initialised
        return adapter.eval()

    def motion_adapter_folder(self, folder: Path, seed: int = 0) -> Path:
        self.motion_adapter(seed).save_pretrained(folder)
        return folder

    def sd15_folder_for_animatediff(self, folder: Path, seed: int = 0) -> Path:
        """A StableDiffusionPipeline folder whose UNet matches ``motion_adapter``: with
        ``AnimateDiffPipeline.from_pretrained(folder, motion_adapter=MotionAdapter.from_pretrained(adapter))``
        it gives the same weights as ``animatediff_pipeline(seed)``."""
        self.sd_pipeline(seed).save_pretrained(folder)
        return folder

    def animatediff_pipeline(self, seed: int = 0):
        """AnimateDiffPipeline: latent 8x8 native (pixels 16x16, 2x VAE), DDIM."""
        from diffusers import AnimateDiffPipeline

        sd = self.sd_pipeline(seed)
        pipe = AnimateDiffPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet,
                                   motion_adapter=self.motion_adapter(seed), scheduler=self.scheduler())
        self.randomize_zero_inits(pipe.unet)
        pipe.unet.eval()
        return self._quiet(pipe)

    def animatediff_folder(self, folder: Path, seed: int = 0) -> Path:
        self.animatediff_pipeline(seed).save_pretrained(folder)
        return folder

    # ------------------------------------------------------------------ AnimateDiff SDXL
    def sdxl_unet2d(self, seed: int = 0, sample_size: int = 8):
        """SDXL layout: DownBlock2D first, two cross-attention levels (the deepest with 2 transformer
        layers), no downsampler at the deepest level, text_time addition embedding (6 time ids * 8 + 32)."""
        from diffusers import UNet2DConditionModel

        torch.manual_seed(seed)
        unet = UNet2DConditionModel(
            sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=(16, 32, 32),
            layers_per_block=2, norm_num_groups=8, cross_attention_dim=64, attention_head_dim=4,
            transformer_layers_per_block=(1, 1, 2),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            addition_embed_type="text_time", addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=8 * 6 + 32,
        )
        self.randomize_zero_inits(unet)
        return unet.eval()

    def motion_adapter_sdxl(self, seed: int = 0):
        """Motion adapter for the SDXL layout: 3 levels, no motion mid block (like animatediff-motion-adapter-sdxl)."""
        from diffusers import MotionAdapter

        torch.manual_seed(seed + 3)
        adapter = MotionAdapter(block_out_channels=(16, 32, 32), motion_layers_per_block=2,
                                motion_num_attention_heads=2, motion_norm_num_groups=8, motion_max_seq_length=32,
                                use_motion_mid_block=False)
        self.randomize_zero_inits(adapter)
        return adapter.eval()

    def animatediff_sdxl_pipeline(self, seed: int = 0):
        """AnimateDiffSDXLPipeline: latent 8x8 native (pixels 16x16), two text encoders (32 + 32 = 64 cross dim)."""
        from diffusers import AnimateDiffSDXLPipeline

        tok = self.tokenizer()
        pipe = AnimateDiffSDXLPipeline(
            vae=self.vae(seed), text_encoder=self.text_encoder(seed), text_encoder_2=self.text_encoder_2(seed),
            tokenizer=tok, tokenizer_2=tok, unet=self.sdxl_unet2d(seed), motion_adapter=self.motion_adapter_sdxl(seed),
            scheduler=self.scheduler(), force_zeros_for_empty_prompt=False)
        self.randomize_zero_inits(pipe.unet)
        pipe.unet.eval()
        return self._quiet(pipe)

    def animatediff_sdxl_folder(self, folder: Path, seed: int = 0) -> Path:
        self.animatediff_sdxl_pipeline(seed).save_pretrained(folder)
        return folder

    # ------------------------------------------------------------------ Stable Video Diffusion
    @staticmethod
    def svd_scheduler():
        """EulerDiscreteScheduler as in stable-video-diffusion-img2vid(-xt)/scheduler_config.json."""
        from diffusers import EulerDiscreteScheduler

        return EulerDiscreteScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
            num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
            steps_offset=1, timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)

    def svd_unet(self, seed: int = 0, sample_size: int = 8):
        """UNetSpatioTemporalConditionModel, two levels (32, 64): cross-attention level + plain level."""
        from diffusers import UNetSpatioTemporalConditionModel

        torch.manual_seed(seed)
        unet = UNetSpatioTemporalConditionModel(
            sample_size=sample_size, in_channels=8, out_channels=4, block_out_channels=(32, 64), layers_per_block=2,
            down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
            up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
            cross_attention_dim=32, num_attention_heads=(2, 4), addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=3 * 8, num_frames=3)
        self.randomize_zero_inits(unet)
        return unet.eval()

    def svd_vae(self, seed: int = 0):
        """AutoencoderKLTemporalDecoder, 2x."""
        from diffusers import AutoencoderKLTemporalDecoder

        torch.manual_seed(seed)
        vae = AutoencoderKLTemporalDecoder(in_channels=3, out_channels=3, block_out_channels=(32, 32),
                                           down_block_types=("DownEncoderBlock2D",) * 2, layers_per_block=1,
                                           latent_channels=4, sample_size=16)
        self.randomize_zero_inits(vae)
        return vae.eval()

    def svd_pipeline(self, seed: int = 0):
        """StableVideoDiffusionPipeline: latent 8x8 native (pixels 16x16)."""
        from diffusers import StableVideoDiffusionPipeline

        pipe = StableVideoDiffusionPipeline(
            vae=self.svd_vae(seed), image_encoder=self.image_encoder(seed, image_size=224, patch_size=32),
            unet=self.svd_unet(seed), scheduler=self.svd_scheduler(), feature_extractor=self.image_processor(224))
        self.randomize_zero_inits(pipe.unet)
        return self._quiet(pipe)

    def svd_folder(self, folder: Path, seed: int = 0) -> Path:
        self.svd_pipeline(seed).save_pretrained(folder)
        return folder

    # ------------------------------------------------------------------ I2VGen-XL
    def i2vgenxl_unet(self, seed: int = 0, sample_size: int = 8):
        from diffusers import I2VGenXLUNet

        torch.manual_seed(seed)
        unet = I2VGenXLUNet(
            sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=2,
            down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
            up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
            norm_num_groups=8, cross_attention_dim=32, attention_head_dim=4)
        self.randomize_zero_inits(unet)
        return unet.eval()

    def i2vgenxl_pipeline(self, seed: int = 0):
        """I2VGenXLPipeline: latent 8x8 native (pixels 16x16, 2x VAE)."""
        from diffusers import I2VGenXLPipeline

        pipe = I2VGenXLPipeline(
            vae=self.vae(seed), text_encoder=self.text_encoder(seed), tokenizer=self.tokenizer(),
            image_encoder=self.image_encoder(seed), feature_extractor=self.image_processor(32),
            unet=self.i2vgenxl_unet(seed), scheduler=self.scheduler())
        self.randomize_zero_inits(pipe.unet)
        return self._quiet(pipe)

    def i2vgenxl_folder(self, folder: Path, seed: int = 0) -> Path:
        self.i2vgenxl_pipeline(seed).save_pretrained(folder)
        return folder


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyModels:
    """Builders of tiny random-weight diffusers models and pipelines (see :class:`TinyModels`)."""
    return TinyModels(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_t2v_folder(tiny, tmp_path_factory) -> Path:
    """One tiny TextToVideoSDPipeline folder for the whole session (CLI, render and hostile-input tests).
    Tests must not write into it: copy it first."""
    return tiny.t2v_folder(tmp_path_factory.mktemp("tiny-t2v") / "tiny-t2v")


# ============================================================================ 4. LDM checkpoints
class LDMModels:
    """Tiny LVDM / VideoCrafter models: YAML configs in the original layout, random-weight ``.ckpt`` files
    with the original key prefixes, tiny CLIP tokenizer / text model; plus the recorded real-model facts."""

    TEXT_WIDTH_LVDM = 32
    TEXT_WIDTH_VC = 64  # OpenCLIP rule: heads = width / 64 -> 1 head

    _VAE_PARAMS = {
        "embed_dim": 4,
        "monitor": "val/rec_loss",
        "ddconfig": {
            "double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
            "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
        },
        "lossconfig": {"target": "torch.nn.Identity"},
    }

    @property
    def VAE_PARAMS(self) -> dict:  # noqa: N802 (a constant, copied so that no test can change it for others)
        return copy.deepcopy(self._VAE_PARAMS)

    # ------------------------------------------------------------------ real models (recorded facts)
    @staticmethod
    def real_params(path: str) -> dict:
        """``model.params`` of a shipped research config, e.g. ``configs/lvdm/t2v.yaml``."""
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.load(REPO_ROOT / path).model.params)

    @staticmethod
    def frozen_shapes(name: str) -> dict[str, list[int]]:
        """``{checkpoint key: shape}`` recorded from a research checkpoint (tests/data/<name>_keys.json.gz)."""
        with gzip.open(DATA / f"{name}_keys.json.gz", "rt") as f:
            return json.load(f)["shapes"]

    # ------------------------------------------------------------------ configs
    def lvdm_config(self, **unet_overrides) -> dict:
        """text2video.yaml's layout with tiny sizes."""
        unet = {
            "image_size": 8, "in_channels": 4, "out_channels": 4, "model_channels": 32,
            "attention_resolutions": [2, 1], "num_res_blocks": 1, "channel_mult": [1, 2], "num_heads": 2,
            "transformer_depth": 1, "context_dim": self.TEXT_WIDTH_LVDM, "use_checkpoint": True, "legacy": False,
            "kernel_size_t": 1, "padding_t": 0, "use_temporal_transformer": True, "temporal_length": 4,
            "use_relative_position": True, **unet_overrides,
        }
        return {
            "model": {
                "target": "lvdm.models.ddpm3d.LatentDiffusion",
                "params": {
                    "linear_start": 0.00085, "linear_end": 0.012, "num_timesteps_cond": 1, "log_every_t": 200,
                    "timesteps": 1000, "first_stage_key": "video", "cond_stage_key": "caption", "image_size": [8, 8],
                    "video_length": 4, "channels": 4, "cond_stage_trainable": False, "conditioning_key": "crossattn",
                    "scale_by_std": False, "scale_factor": 0.18215, "use_ema": False,
                    "unet_config": {"target": "lvdm.models.modules.openaimodel3d.UNetModel", "params": unet},
                    "first_stage_config": {"target": "lvdm.models.autoencoder.AutoencoderKL",
                                           "params": self.VAE_PARAMS},
                    "cond_stage_config": {"target": "lvdm.models.modules.condition_modules.FrozenCLIPEmbedder"},
                },
            }
        }

    def videocrafter_config(self, v2: bool = True, **unet_overrides) -> dict:
        """inference_t2v_512_v2.0.yaml's layout (``v2=False``: the v1.0 512 settings) with tiny sizes."""
        unet = {
            "in_channels": 4, "out_channels": 4, "model_channels": 32, "attention_resolutions": [2, 1],
            "num_res_blocks": 1, "channel_mult": [1, 2], "num_head_channels": 16, "transformer_depth": 1,
            "context_dim": self.TEXT_WIDTH_VC, "use_linear": True, "use_checkpoint": True, "temporal_conv": v2,
            "temporal_attention": True, "temporal_selfatt_only": True, "use_relative_position": not v2,
            "use_causal_attention": False, "temporal_length": 4, "addition_attention": True, "fps_cond": v2,
            **unet_overrides,
        }
        params = {
            "linear_start": 0.00085, "linear_end": 0.012, "num_timesteps_cond": 1, "timesteps": 1000,
            "first_stage_key": "video", "cond_stage_key": "caption", "cond_stage_trainable": False,
            "conditioning_key": "crossattn", "image_size": [8, 16], "channels": 4, "scale_by_std": False,
            "scale_factor": 0.18215, "use_ema": False, "uncond_type": "empty_seq",
        }
        if v2:
            params.update(use_scale=True, scale_b=0.7)
        params.update(
            unet_config={"target": "lvdm.modules.networks.openaimodel3d.UNetModel", "params": unet},
            first_stage_config={"target": "lvdm.models.autoencoder.AutoencoderKL", "params": self.VAE_PARAMS},
            cond_stage_config={
                "target": "lvdm.modules.encoders.condition.FrozenOpenCLIPEmbedder",
                "params": {"freeze": True, "layer": "penultimate"},
            },
        )
        return {"model": {"target": "lvdm.models.ddpm3d.LatentDiffusion", "params": params}}

    @staticmethod
    def write_config(config: dict, path: Path) -> Path:
        from omegaconf import OmegaConf

        path.parent.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(config), path)
        return path

    # ------------------------------------------------------------------ weights
    @staticmethod
    def randomize_(module: torch.nn.Module, seed: int, std: float = 0.05) -> torch.nn.Module:
        """Fill every parameter with seeded noise (norm weights around 1) so no branch is a no-op."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in module.named_parameters():
                noise = torch.randn(p.shape, generator=g) * std
                p.copy_(noise + 1.0 if ("norm" in name or name.startswith("ln")) and name.endswith("weight") else noise)
        return module

    def lvdm_unet(self, seed: int = 0, **overrides):
        """The tiny LVDM UNet of :meth:`lvdm_config`, randomised."""
        from scalecrafter_video.models.lvdm import UNetModel

        params = self.lvdm_config(**overrides)["model"]["params"]["unet_config"]["params"]
        return self.randomize_(UNetModel(**params), seed).eval()

    def videocrafter_unet(self, v2: bool = True, seed: int = 0, **overrides):
        """The tiny VideoCrafter UNet of :meth:`videocrafter_config`, randomised."""
        from scalecrafter_video.models.videocrafter import UNetModel

        params = self.videocrafter_config(v2, **overrides)["model"]["params"]["unet_config"]["params"]
        return self.randomize_(UNetModel(**params), seed).eval()

    def write_checkpoint(self, config_path: Path, ckpt_path: Path, seed: int = 0,
                         clip_folder: Path | None = None) -> dict:
        """Random weights for every part, saved as ``{'state_dict': ...}`` with the research prefixes.

        LVDM: the text encoder weights come from ``clip_folder`` (``cond_stage_model.transformer.*``,
        in the transformers-4 ``text_model.`` layout). VideoCrafter: a random OpenCLIP text tower
        (``cond_stage_model.model.*``). Schedule buffers are included as LatentDiffusion saves them.
        """
        from scalecrafter_video.models.ldm_autoencoder import AutoencoderKL
        from scalecrafter_video.models.ldm_pipeline import build_unet, make_alphas_cumprod, read_model_config
        from scalecrafter_video.models.open_clip_text import OpenCLIPTextEncoder

        spec = read_model_config(config_path)
        state = {}
        unet = self.randomize_(build_unet(spec), seed)
        state.update({f"model.diffusion_model.{k}": v for k, v in unet.state_dict().items()})
        vae = self.randomize_(AutoencoderKL(**spec.vae_params), seed + 1, std=0.03)
        state.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
        if spec.family == "videocrafter":
            text = self.randomize_(OpenCLIPTextEncoder(width=self.TEXT_WIDTH_VC, layers=2, heads=1, vocab_size=514,
                                                       embed_dim=32), seed + 2)
            state.update({f"cond_stage_model.model.{k}": v for k, v in text.state_dict().items()})
        elif clip_folder is not None:
            from transformers import CLIPTextModel

            text = CLIPTextModel.from_pretrained(str(clip_folder))
            for k, v in text.state_dict().items():
                key = k if k.startswith("text_model.") else f"text_model.{k}"
                state[f"cond_stage_model.transformer.{key}"] = v
        ac = make_alphas_cumprod(spec)
        state["alphas_cumprod"] = ac.float()
        state["betas"] = (1 - ac / torch.cat([ac.new_ones(1), ac[:-1]])).float()
        torch.save({"state_dict": state}, ckpt_path)
        return state

    # ------------------------------------------------------------------ text
    @staticmethod
    def bytes_to_unicode() -> list[str]:
        """The 256 printable stand-ins CLIP's byte-level BPE uses for raw bytes."""
        bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
              + list(range(ord("®"), ord("ÿ") + 1)))
        cs = bs[:]
        n = 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        return [chr(c) for c in cs]

    def write_tokenizer(self, folder: Path) -> int:
        """A character-level CLIP BPE tokenizer (no merges). Returns the vocabulary size (514)."""
        folder.mkdir(parents=True, exist_ok=True)
        chars = self.bytes_to_unicode()
        vocab = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
        (folder / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}))
        (folder / "merges.txt").write_text("#version: 0.2\n")
        return len(vocab)

    def write_clip_folder(self, folder: Path, seed: int = 0) -> Path:
        """Tokenizer + a 2-layer, width-32 ``CLIPTextModel`` saved with ``save_pretrained``."""
        from transformers import CLIPTextConfig, CLIPTextModel

        n = self.write_tokenizer(folder)
        torch.manual_seed(seed)
        config = CLIPTextConfig(
            vocab_size=n, hidden_size=self.TEXT_WIDTH_LVDM, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77, bos_token_id=n - 2, eos_token_id=n - 1,
            pad_token_id=n - 1,
        )
        CLIPTextModel(config).save_pretrained(folder)
        return folder

    # ------------------------------------------------------------------ folders
    def lvdm_folder(self, root: Path, seed: int = 0, **unet_overrides) -> tuple[Path, Path, Path]:
        """``(ckpt, yaml, clip folder)`` of a tiny LVDM model under ``root``."""
        clip = self.write_clip_folder(root / "clip")
        cfg = self.write_config(self.lvdm_config(**unet_overrides), root / "configs" / "t2v.yaml")
        ckpt = root / "models" / "t2v" / "model.ckpt"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        self.write_checkpoint(cfg, ckpt, seed, clip_folder=clip)
        return ckpt, cfg, clip

    def videocrafter_folder(self, root: Path, v2: bool = True, seed: int = 0) -> tuple[Path, Path, Path]:
        """``(ckpt, yaml, tokenizer folder)`` of a tiny VideoCrafter model under ``root``."""
        tok = root / "tokenizer"
        self.write_tokenizer(tok)
        cfg = self.write_config(self.videocrafter_config(v2), root / "configs" / "t2v.yaml")
        ckpt = root / "model.ckpt"
        self.write_checkpoint(cfg, ckpt, seed)
        return ckpt, cfg, tok


@pytest.fixture(scope="session")
def ldm() -> LDMModels:
    """Tiny LVDM / VideoCrafter configs, UNets, checkpoints and folders (see :class:`LDMModels`)."""
    return LDMModels()


@pytest.fixture(scope="session")
def lvdm_folder(ldm, tmp_path_factory) -> tuple[Path, Path, Path]:
    """``(ckpt, yaml, clip folder)`` of the tiny LVDM model (seed 0), built once. Read-only: copy to change."""
    return ldm.lvdm_folder(tmp_path_factory.mktemp("lvdm"))


@pytest.fixture(scope="session")
def videocrafter_folder(ldm, tmp_path_factory) -> tuple[Path, Path, Path]:
    """``(ckpt, yaml, tokenizer folder)`` of the tiny VideoCrafter2 model (seed 0), built once. Read-only."""
    return ldm.videocrafter_folder(tmp_path_factory.mktemp("vc2"))


# ============================================================================ 5. FVD: tiny I3D and video files
def _tiny_i3d(divisor: int = 16, seed: int = 0):
    from scalecrafter_video.metrics.i3d import I3D, Unit3D

    g = torch.Generator().manual_seed(seed)
    model = I3D(channel_divisor=divisor)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, Unit3D):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if m.batch_norm:
                    c = m.beta.shape[0]
                    m.beta.copy_(torch.randn(c, generator=g) * 0.1)
                    m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="session")
def tiny_i3d():
    """``tiny_i3d(divisor=16, seed=0)``: a random I3D with every hidden width divided by ``divisor``
    and non-trivial BatchNorm statistics."""
    return _tiny_i3d


@pytest.fixture(scope="session")
def tiny_i3d_weights():
    """``tiny_i3d_weights(path, divisor=16, seed=0)``: save a tiny I3D as a weights file at ``path``
    (the format ``load_i3d(weights=...)`` reads); returns the path."""
    from scalecrafter_video.metrics.i3d_weights import save_i3d_weights

    def write(path: Path, divisor: int = 16, seed: int = 0) -> Path:
        return save_i3d_weights(_tiny_i3d(divisor, seed), path, source=f"test-random-seed{seed}")

    return write


class VideoFiles:
    """Small seeded videos and the files the readers accept (mp4 and other containers, gif, frame folders)."""

    @staticmethod
    def random(n: int, t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
        """uint8 (n, t, h, w, 3) with smooth content (so lossy codecs keep it recognisable)."""
        rng = np.random.default_rng(seed)
        base = rng.integers(0, 256, size=(n, t, max(h // 8, 1), max(w // 8, 1), 3)).astype(np.uint8)
        return base.repeat(8, axis=2)[:, :, :h].repeat(8, axis=3)[:, :, :, :w]

    @staticmethod
    def write_mp4(path: Path, frames: np.ndarray, codec: str = "libx264", fps: int = 8) -> Path:
        import av

        with av.open(str(path), mode="w") as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.bit_rate = 8_000_000
            for fr in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(fr), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return path

    @staticmethod
    def write_gif(path: Path, frames: np.ndarray) -> Path:
        from PIL import Image

        ims = [Image.fromarray(f) for f in frames]
        ims[0].save(path, save_all=True, append_images=ims[1:], duration=100, loop=0, optimize=False)
        return path

    @staticmethod
    def write_frame_folder(folder: Path, frames: np.ndarray, ext: str = "png", pattern: str = "{}") -> Path:
        from PIL import Image

        folder.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(frames):
            Image.fromarray(f).save(folder / f"{pattern.format(i)}.{ext}")
        return folder


@pytest.fixture(scope="session")
def videos() -> VideoFiles:
    """Small seeded videos and video files (see :class:`VideoFiles`)."""
    return VideoFiles()
