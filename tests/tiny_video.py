"""Tiny video pipelines built in code (seeded, random weights) for tests: no hub, no network.

Builders (all native latent 8x8 = pixels 16x16 through a 2x VAE; every UNet has had its zero-initialised
weights randomised, after the motion adapter was merged, so every layer influences the output):

  tiny_animatediff_pipeline(tmp, seed)      AnimateDiffPipeline  UNet2D (16,16,32,32) + MotionAdapter -> UNetMotionModel
  tiny_animatediff_sdxl_pipeline(tmp, seed) AnimateDiffSDXLPipeline  SDXL UNet2D (16,32,32), text_time + SDXL adapter
  tiny_svd_pipeline(tmp, seed)              StableVideoDiffusionPipeline  UNetSpatioTemporalConditionModel (32,64)
  tiny_i2vgenxl_pipeline(tmp, seed)         I2VGenXLPipeline         I2VGenXLUNet (16,32)
  tiny_<name>_folder(folder, seed) -> folder  save_pretrained(folder); <PipelineClass>.from_pretrained(folder) gives
                                            bit-identical output.
  tiny_motion_adapter_folder(folder, seed), tiny_sd15_folder_for_animatediff(folder, seed):
      AnimateDiffPipeline.from_pretrained(sd_folder, motion_adapter=MotionAdapter.from_pretrained(adapter_folder))
      is bit-identical to tiny_animatediff_pipeline(tmp, seed).
  tiny_image(size=(w, h), seed) -> PIL RGB image.
All run at 1x, 2x (latent 16x16) and odd sizes such as pixels 24x24 / 16x32 / 40x40 in well under a second
(2-3 frames, 2-4 steps, CFG on). height/width must be multiples of 8 pixels (each pipeline's check_inputs).

Call gotchas:
  * I2VGenXLPipeline.__call__ defaults height=704, width=1280 (not None): always pass height/width.
  * I2VGenXLPipeline.__call__ defaults clip_skip=1, which reads `text_encoder.text_model.final_layer_norm`; the
    installed transformers 5 CLIPTextModel has no `.text_model` (AttributeError). Pass clip_skip=None.
  * I2VGenXL encodes the image with `vae.encode(image).latent_dist.sample()` WITHOUT the generator: its output
    depends on the global torch RNG; call torch.manual_seed(...) before __call__ for reproducibility.
  * SVD always resizes the conditioning image to 224x224 for CLIP (hard-coded `_resize_with_antialiasing`), and calls
    the feature extractor with do_resize/do_center_crop False, so the tiny CLIP vision model is image_size=224,
    patch 32. I2VGenXL instead resizes to feature_extractor.crop_size (32 here; image_size=32, patch 8).
    (With a torch.Tensor `image` SVD skips that resize, so the tensor would have to be 224x224 already: pass PIL.)
  * SVD's UNet and AutoencoderKLTemporalDecoder hard-wire GroupNorm(32 groups): channels must be multiples of 32.
  * Without torchvision, transformers' CLIPImageProcessor is CLIPImageProcessorPil (saved under that name).
  * DDIMScheduler has no `step_index` attribute; EulerDiscreteScheduler (SVD) has it.
  * AnimateDiff motion modules have motion_max_seq_length=32 (at most 32 frames).

UNet-call facts, observed with `pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)` during __call__ with
CFG on (guidance 2.0; SVD min/max_guidance_scale 1.0/3.0), batch 1, F=3 frames, 3 steps, native 16x16 pixels
(h = w = 8 latent; at 2x everything spatial doubles: h = w = 16). B2 = 2 = CFG batch, halves ordered
[uncond, cond]. In every pipeline `sample` and the timestep are passed POSITIONALLY (args[0], args[1]);
everything else by keyword.

  AnimateDiffPipeline -> UNetMotionModel.forward(sample, timestep, encoder_hidden_states, timestep_cond, ...)
    sample                  (2, 4, F, h, w)   = (batch, channels, frames, h, w)
    timestep                0-d int64 tensor; DDIM (steps_offset=1, leading): 3 steps 667, 334, 1; 2 steps 501, 1
    encoder_hidden_states   (2*F, 16, 32)  ALREADY repeated per frame by the pipeline
                            (cat([neg, pos]).repeat_interleave(F, 0): F uncond rows, then F cond rows)
    added_cond_kwargs None, cross_attention_kwargs None (no return_dict kwarg; pipeline uses `.sample`)
    pipe.do_classifier_free_guidance: True (Python bool); scheduler.step_index: no such attribute

  AnimateDiffSDXLPipeline -> UNetMotionModel.forward(sample, timestep, encoder_hidden_states, timestep_cond, ...)
    sample                  (2, 4, F, h, w)   = (batch, channels, frames, h, w)
    timestep                0-d int64 tensor; 667, 334, 1 (DDIM as above)
    encoder_hidden_states   (2*F, 16, 64)  per frame (repeat_interleave F); 64 = text_encoder 32 + text_encoder_2 32
    added_cond_kwargs       {"text_embeds": (2, 32) pooled, per video (NOT per frame),
                             "time_ids": (2, 6) = [H, W, 0, 0, H, W] in PIXELS, e.g. [16,16,0,0,16,16]; 2x: 32s}
    timestep_cond None, cross_attention_kwargs None, return_dict False
    pipe.do_classifier_free_guidance: True (Python bool); scheduler.step_index: no such attribute

  StableVideoDiffusionPipeline -> UNetSpatioTemporalConditionModel.forward(sample, timestep, encoder_hidden_states,
                                                                           added_time_ids, return_dict)
    sample                  (2, F, 8, h, w)   = (batch, FRAMES, channels, h, w); channels 8 = 4 noisy latents
                            (already scale_model_input-ed) + 4 image latents (vae latent_dist.mode(), NOT multiplied
                            by scaling_factor; uncond half all zeros), concatenated on dim 2
    timestep                0-d float32 tensor, continuous = 0.25*ln(sigma): 3 steps 1.6378, 0.6867, -1.5537
                            (karras sigmas 700 -> 0.002)
    encoder_hidden_states   (2, 1, 32)  CLIP image embedding, per video (UNet repeats it per frame); uncond = zeros
    added_time_ids          (2, 3) = [fps-1, motion_bucket_id, noise_aug_strength] = [6, 127, 0.02] for both halves
    return_dict False
    pipe.do_classifier_free_guidance: 0-d bool TENSOR (tensor(True)): during the loop pipe.guidance_scale is the
        per-frame tensor linspace(min, max, F) of shape (1, F, 1, 1, 1); scheduler.step_index: 0, 1, 2 (an int,
        already set by scale_model_input at UNet-call time)

  I2VGenXLPipeline -> I2VGenXLUNet.forward(sample, timestep, fps, image_latents, image_embeddings,
                                           encoder_hidden_states, ...)   NB 3rd/4th params are fps, image_latents
    sample                  (2, 4, F, h, w)   = (batch, channels, frames, h, w)
    timestep                0-d int64 tensor; 667, 334, 1 (DDIM)
    encoder_hidden_states   (2, 16, 32)  text, per video (NOT per frame)
    fps                     (2,) int64 [16, 16] (target_fps)
    image_latents           (2, 4, F, h, w): frame 0 = vae latent * scaling_factor, frames k>=1 = constant k/(F-1);
                            identical in both CFG halves
    image_embeddings        (2, 1, 32) CLIP image embedding; uncond half zeros
    cross_attention_kwargs None, return_dict False
    (inside, the spatial cross-attention context is 16 text + 64 image-latent + 4 image-embedding = 84 tokens)
    pipe.do_classifier_free_guidance: True (Python bool); scheduler.step_index: no such attribute

Temporal modules (module-name prefixes, `*` = any index). "Over frames": the Attention's query is
(batch*h*w, F, C), seen in hooks. Spatial attentions (`*.attentions.*.transformer_blocks.*.attn1/attn2`) get
(batch*F, h*w, C) and are not listed.

  AnimateDiff (SD1.5 and SDXL): AnimateDiffTransformer3D at
      down_blocks.*.motion_modules.*, up_blocks.*.motion_modules.*, mid_block.motion_modules.* (SD1.5 only; the SDXL
      adapter has use_motion_mid_block=False)
    over frames: <prefix>.transformer_blocks.*.attn1 AND .attn2 (both SELF-attention over frames, kv None)
    temporal-kernel convs: none (no Conv3d/Conv1d in the UNet or VAE)
    tiny counts: SD1.5 21 motion modules (8 down, 1 mid, 12 up); SDXL 15 (6 down, 9 up)

  SVD: TransformerSpatioTemporalModel at {down_blocks.*, mid_block, up_blocks.*}.attentions.*
    over frames: <...>.attentions.*.temporal_transformer_blocks.*.attn1 (self) and .attn2 (CROSS-attention, query
        over frames, kv = image embedding (batch*h*w, 1, 32)); TemporalBasicTransformerBlock; frame position via
        <...>.attentions.*.time_pos_embed / time_proj
    temporal-kernel convs (Conv3d kernel (3,1,1), padding (1,0,0)):
        {down_blocks.*, mid_block, up_blocks.*}.resnets.*.temporal_res_block.conv1 / .conv2 (TemporalResnetBlock
        inside SpatioTemporalResBlock, whose 2D half is .spatial_res_block)
    spatial/temporal blenders (AlphaBlender, no conv): <...>.attentions.*.time_mixer, <...>.resnets.*.time_mixer
    VAE (AutoencoderKLTemporalDecoder) temporal convs, Conv3d (3,1,1): decoder.time_conv_out,
        decoder.mid_block.resnets.*.temporal_res_block.conv1/conv2,
        decoder.up_blocks.*.resnets.*.temporal_res_block.conv1/conv2

  I2VGenXL:
    over frames (all SELF-attention, kv None):
        image_latents_temporal_encoder.attn1 (I2VGenXLTransformerTemporalEncoder on the image latents, C = 4)
        transformer_in.transformer_blocks.*.attn1 / .attn2 (TransformerTemporalModel after conv_in)
        {down_blocks.*, mid_block, up_blocks.*}.temp_attentions.*.transformer_blocks.*.attn1 / .attn2
    temporal-kernel convs (Conv3d kernel (3,1,1), padding (1,0,0)), TemporalConvLayer at
        {down_blocks.*, mid_block, up_blocks.*}.temp_convs.*: conv1.2, conv2.3, conv3.3, conv4.3
        (conv1 = Sequential(GroupNorm, SiLU, Conv3d); conv2..4 = Sequential(GroupNorm, SiLU, Dropout, Conv3d))
    VAE: plain AutoencoderKL, no temporal layers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tiny import _randomize_zero_inits, tiny_scheduler, tiny_sd_pipeline, tiny_text_encoder, tiny_tokenizer, tiny_vae


def _quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --------------------------------------------------------------------------------------------- AnimateDiff (SD 1.5)
def tiny_motion_adapter(seed: int = 0):
    """Motion adapter for the SD1.5 layout of `tiny.tiny_unet2d()`: 4 levels (16, 16, 32, 32), 2 layers per block,
    with a motion mid block (like the AnimateDiff v1.5 adapters)."""
    from diffusers import MotionAdapter

    torch.manual_seed(seed + 2)
    adapter = MotionAdapter(block_out_channels=(16, 16, 32, 32), motion_layers_per_block=2,
                            motion_num_attention_heads=2, motion_norm_num_groups=8, motion_max_seq_length=32,
                            use_motion_mid_block=True)
    _randomize_zero_inits(adapter)  # proj_out of every motion transformer is zero-initialised
    return adapter.eval()


def tiny_motion_adapter_folder(folder: Path, seed: int = 0) -> Path:
    tiny_motion_adapter(seed).save_pretrained(folder)
    return folder


def tiny_sd15_folder_for_animatediff(folder: Path, seed: int = 0) -> Path:
    """A StableDiffusionPipeline folder whose UNet matches `tiny_motion_adapter`: with
    `AnimateDiffPipeline.from_pretrained(folder, motion_adapter=MotionAdapter.from_pretrained(adapter_folder))`
    it gives the same weights as `tiny_animatediff_pipeline(tmp, seed)`."""
    tiny_sd_pipeline(folder.parent / f"_{folder.name}_parts", seed).save_pretrained(folder)
    return folder


def tiny_animatediff_pipeline(tmp: Path, seed: int = 0):
    """AnimateDiffPipeline: latent 8x8 native (pixels 16x16, 2x VAE), DDIM."""
    from diffusers import AnimateDiffPipeline

    sd = tiny_sd_pipeline(tmp, seed)
    pipe = AnimateDiffPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet,
                               motion_adapter=tiny_motion_adapter(seed), scheduler=tiny_scheduler())
    _randomize_zero_inits(pipe.unet)
    pipe.unet.eval()
    return _quiet(pipe)


def tiny_animatediff_folder(folder: Path, seed: int = 0) -> Path:
    tiny_animatediff_pipeline(folder.parent / f"_{folder.name}_parts", seed).save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------------------------- AnimateDiff SDXL
def _tiny_text_encoder_2(seed: int = 0, dim: int = 32, projection_dim: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(seed + 1)
    return CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=80, hidden_size=dim, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1,
        projection_dim=projection_dim)).eval()


def tiny_sdxl_unet2d(seed: int = 0, sample_size: int = 8):
    """SDXL layout: DownBlock2D first, two cross-attention levels (the deepest with 2 transformer layers),
    no downsampler at the deepest level, text_time addition embedding (6 time ids * 8 + pooled 32)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=(16, 32, 32),
        layers_per_block=2, norm_num_groups=8, cross_attention_dim=64, attention_head_dim=4,
        transformer_layers_per_block=(1, 1, 2),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=8 * 6 + 32,
    )
    _randomize_zero_inits(unet)
    return unet.eval()


def tiny_motion_adapter_sdxl(seed: int = 0):
    """Motion adapter for the SDXL layout: 3 levels, no motion mid block (like animatediff-motion-adapter-sdxl)."""
    from diffusers import MotionAdapter

    torch.manual_seed(seed + 3)
    adapter = MotionAdapter(block_out_channels=(16, 32, 32), motion_layers_per_block=2, motion_num_attention_heads=2,
                            motion_norm_num_groups=8, motion_max_seq_length=32, use_motion_mid_block=False)
    _randomize_zero_inits(adapter)
    return adapter.eval()


def tiny_animatediff_sdxl_pipeline(tmp: Path, seed: int = 0):
    """AnimateDiffSDXLPipeline: latent 8x8 native (pixels 16x16), two text encoders (32 + 32 = 64 cross dim)."""
    from diffusers import AnimateDiffSDXLPipeline

    tok = tiny_tokenizer(tmp / "_xl_tok")
    pipe = AnimateDiffSDXLPipeline(
        vae=tiny_vae(seed), text_encoder=tiny_text_encoder(seed), text_encoder_2=_tiny_text_encoder_2(seed),
        tokenizer=tok, tokenizer_2=tok, unet=tiny_sdxl_unet2d(seed), motion_adapter=tiny_motion_adapter_sdxl(seed),
        scheduler=tiny_scheduler(), force_zeros_for_empty_prompt=False)
    _randomize_zero_inits(pipe.unet)
    pipe.unet.eval()
    return _quiet(pipe)


def tiny_animatediff_sdxl_folder(folder: Path, seed: int = 0) -> Path:
    tiny_animatediff_sdxl_pipeline(folder.parent / f"_{folder.name}_parts", seed).save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------------------------- image encoders
def tiny_image_encoder(seed: int = 0, image_size: int = 32, patch_size: int = 8, projection_dim: int = 32):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed + 4)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, projection_dim=projection_dim, num_hidden_layers=2,
                           num_attention_heads=2, image_size=image_size, patch_size=patch_size)
    return CLIPVisionModelWithProjection(cfg).eval()


def tiny_image_processor(size: int = 32):
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                              do_center_crop=True, do_resize=True, do_normalize=True)


def tiny_image(size=(16, 16), seed: int = 0):
    """A smooth-ish seeded RGB PIL image (width, height) = size."""
    import numpy as np
    from PIL import Image

    w, h = size
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, 4, 4, generator=gen)
    img = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0]
    img = img + 0.1 * torch.rand(3, h, w, generator=gen)
    arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(arr, mode="RGB")


# --------------------------------------------------------------------------------------------- SVD
def tiny_svd_scheduler():
    """EulerDiscreteScheduler as in stable-video-diffusion-img2vid(-xt)/scheduler_config.json."""
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
        num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
        steps_offset=1, timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)


def tiny_svd_unet(seed: int = 0, sample_size: int = 8):
    """UNetSpatioTemporalConditionModel. Its GroupNorms are hard-wired to 32 groups: channels must be multiples
    of 32. Two levels (32, 64): cross-attention level + plain level, like SVD's 3 + 1."""
    from diffusers import UNetSpatioTemporalConditionModel

    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=sample_size, in_channels=8, out_channels=4, block_out_channels=(32, 64), layers_per_block=2,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32, num_attention_heads=(2, 4), addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=3 * 8, num_frames=3)
    _randomize_zero_inits(unet)
    return unet.eval()


def tiny_svd_vae(seed: int = 0):
    """AutoencoderKLTemporalDecoder, 2x (its GroupNorms are hard-wired to 32 groups)."""
    from diffusers import AutoencoderKLTemporalDecoder

    torch.manual_seed(seed)
    vae = AutoencoderKLTemporalDecoder(in_channels=3, out_channels=3, block_out_channels=(32, 32),
                                       down_block_types=("DownEncoderBlock2D",) * 2, layers_per_block=1,
                                       latent_channels=4, sample_size=16)
    _randomize_zero_inits(vae)
    return vae.eval()


def tiny_svd_pipeline(tmp: Path, seed: int = 0):
    """StableVideoDiffusionPipeline: latent 8x8 native (pixels 16x16). The pipeline always resizes the
    conditioning image to 224x224 for CLIP (hard-coded), so the image encoder is image_size=224, patch 32."""
    from diffusers import StableVideoDiffusionPipeline

    pipe = StableVideoDiffusionPipeline(
        vae=tiny_svd_vae(seed), image_encoder=tiny_image_encoder(seed, image_size=224, patch_size=32),
        unet=tiny_svd_unet(seed), scheduler=tiny_svd_scheduler(), feature_extractor=tiny_image_processor(224))
    _randomize_zero_inits(pipe.unet)
    return _quiet(pipe)


def tiny_svd_folder(folder: Path, seed: int = 0) -> Path:
    tiny_svd_pipeline(folder.parent / f"_{folder.name}_parts", seed).save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------------------------- I2VGen-XL
def tiny_i2vgenxl_unet(seed: int = 0, sample_size: int = 8):
    from diffusers import I2VGenXLUNet

    torch.manual_seed(seed)
    unet = I2VGenXLUNet(
        sample_size=sample_size, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
        norm_num_groups=8, cross_attention_dim=32, attention_head_dim=4)
    _randomize_zero_inits(unet)
    return unet.eval()


def tiny_i2vgenxl_pipeline(tmp: Path, seed: int = 0):
    """I2VGenXLPipeline: latent 8x8 native (pixels 16x16, 2x VAE). NB its __call__ defaults are height=704,
    width=1280 (not None): always pass height/width."""
    from diffusers import I2VGenXLPipeline

    pipe = I2VGenXLPipeline(
        vae=tiny_vae(seed), text_encoder=tiny_text_encoder(seed), tokenizer=tiny_tokenizer(tmp / "_i2v_tok"),
        image_encoder=tiny_image_encoder(seed), feature_extractor=tiny_image_processor(32),
        unet=tiny_i2vgenxl_unet(seed), scheduler=tiny_scheduler())
    _randomize_zero_inits(pipe.unet)
    return _quiet(pipe)


def tiny_i2vgenxl_folder(folder: Path, seed: int = 0) -> Path:
    tiny_i2vgenxl_pipeline(folder.parent / f"_{folder.name}_parts", seed).save_pretrained(folder)
    return folder
