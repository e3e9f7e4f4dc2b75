"""Text-to-video sampling for LVDM and VideoCrafter checkpoints (``.ckpt`` + the original YAML).

:meth:`LDMVideoPipeline.from_checkpoint` reads the original ``configs/...yaml`` unchanged
(omegaconf), builds the native UNet / autoencoder / text encoder of this package and loads the
checkpoint strictly with ``torch.load(..., weights_only=True)``. Sampling follows the research
code's DDIM sampler (``ddim_timesteps = range(0, T, T // S) + 1``, eta-scaled sigmas, and for
VideoCrafter's ``use_scale`` the ``scale_arr`` rescaling of the predicted ``x0``), with
classifier-free guidance computed as ONE UNet call on ``[uncond, cond]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from einops import rearrange

from ..errors import ConfigError, ModelLoadError
from ..ops.pixels import signed_to_uint8
from ..pipelines.sampling import sample_loop, uses_cfg
from .ldm_autoencoder import AutoencoderKL
from .ldm_blocks import load_state_dict_strict

__all__ = ["DDIMSampler", "LDMModelSpec", "LDMVideoPipeline", "read_model_config"]

LVDM_UNET = "lvdm.models.modules.openaimodel3d.UNetModel"
VIDEOCRAFTER_UNET = "lvdm.modules.networks.openaimodel3d.UNetModel"
_FAMILIES = {LVDM_UNET: "lvdm", VIDEOCRAFTER_UNET: "videocrafter"}

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model."
# Diffusion-schedule buffers that LatentDiffusion checkpoints carry; they are recomputed from the config.
SCHEDULE_BUFFERS = frozenset(
    {
        "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
        "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
        "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
        "logvar", "scale_arr", "scale_factor",
    }
)
# Non-parameter buffers that some library versions saved; ignored when present.
_IGNORED_TEXT_BUFFERS = (
    "transformer.text_model.embeddings.position_ids",
    "transformer.embeddings.position_ids",
    "model.attn_mask",
)

DEFAULTS = {
    # family: (guidance scale, fps written to files, fps conditioning value)
    "lvdm": (15.0, 8, None),
    "videocrafter": (12.0, 10, 28),
}


# ---------------------------------------------------------------------------------------------- config
@dataclass
class LDMModelSpec:
    """What the pipeline needs from an LDM YAML (``model.params``)."""

    family: str
    unet_params: dict
    vae_params: dict
    text_target: str
    text_params: dict
    latent_size: tuple[int, int]
    channels: int
    num_frames: int
    scale_factor: float
    linear_start: float
    linear_end: float
    num_timesteps: int
    beta_schedule: str
    use_scale: bool
    scale_a: float
    scale_b: float
    mid_step: int
    fix_scale_bug: bool
    uncond_type: str


def _plain(node) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def read_model_config(config_path: str | Path) -> LDMModelSpec:
    """Parse an original LVDM / VideoCrafter model YAML into an :class:`LDMModelSpec`."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    from yaml import YAMLError

    path = Path(config_path)
    if not path.is_file():
        raise ModelLoadError(f"model config not found: {path}")
    try:
        cfg = _plain(OmegaConf.load(path))
    except (YAMLError, OmegaConfBaseException, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(f"malformed YAML in {path}: {first}") from None
    try:
        model = cfg["model"]
        params = model["params"]
        unet_cfg = params["unet_config"]
        vae_cfg = params["first_stage_config"]
        text_cfg = params["cond_stage_config"]
    except (KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path}: not an LDM model config (missing model.params.{exc})") from None
    if str(model.get("target", "")).rsplit(".", 1)[-1] != "LatentDiffusion":
        raise ModelLoadError(
            f"{path}: model target {model.get('target')!r} is not supported; only the text-to-video "
            "LatentDiffusion models are (not image-to-video / LatentVisualDiffusion)"
        )
    family = _FAMILIES.get(unet_cfg.get("target"))
    if family is None:
        raise ModelLoadError(
            f"{path}: unsupported UNet target {unet_cfg.get('target')!r}; expected {LVDM_UNET} (LVDM) "
            f"or {VIDEOCRAFTER_UNET} (VideoCrafter)"
        )
    if not str(vae_cfg.get("target", "")).endswith("autoencoder.AutoencoderKL"):
        raise ModelLoadError(f"{path}: first stage {vae_cfg.get('target')!r} is not the 2D AutoencoderKL")
    if params.get("parameterization", "eps") != "eps":
        raise ModelLoadError(f"{path}: only eps-prediction models are supported")
    unet_params = dict(unet_cfg.get("params", {}))
    size = params.get("image_size", unet_params.get("image_size", 32))
    latent = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(s) for s in size)
    frames = params.get("video_length") or unet_params.get("temporal_length") or 16
    return LDMModelSpec(
        family=family,
        unet_params=unet_params,
        vae_params=dict(vae_cfg.get("params", {})),
        text_target=str(text_cfg.get("target", "")),
        text_params=dict(text_cfg.get("params", {}) or {}),
        latent_size=latent,
        channels=int(params.get("channels", 4)),
        num_frames=int(frames),
        scale_factor=float(params.get("scale_factor", 1.0)),
        linear_start=float(params.get("linear_start", 1e-4)),
        linear_end=float(params.get("linear_end", 2e-2)),
        num_timesteps=int(params.get("timesteps", 1000)),
        beta_schedule=str(params.get("beta_schedule", "linear")),
        use_scale=bool(params.get("use_scale", False)),
        scale_a=float(params.get("scale_a", 1.0)),
        scale_b=float(params.get("scale_b", 0.3)),
        mid_step=int(params.get("mid_step", 400)),
        fix_scale_bug=bool(params.get("fix_scale_bug", False)),
        uncond_type=str(params.get("uncond_type", "empty_seq")),
    )


def build_unet(spec: LDMModelSpec) -> torch.nn.Module:
    if spec.family == "lvdm":
        from .lvdm import UNetModel
    else:
        from .videocrafter import UNetModel
    try:
        return UNetModel(**spec.unet_params)
    except TypeError as exc:  # unknown / missing keyword in the YAML
        raise ConfigError(f"unet_config.params: {exc}") from None


# ---------------------------------------------------------------------------------------------- sampler
def make_alphas_cumprod(spec: LDMModelSpec) -> torch.Tensor:
    """``prod(1 - beta)`` in float64 for the config's beta schedule (LDM's ``make_beta_schedule``)."""
    n, a, b = spec.num_timesteps, spec.linear_start, spec.linear_end
    if spec.beta_schedule == "linear":
        betas = torch.linspace(a**0.5, b**0.5, n, dtype=torch.float64) ** 2
    elif spec.beta_schedule == "sqrt_linear":
        betas = torch.linspace(a, b, n, dtype=torch.float64)
    elif spec.beta_schedule == "sqrt":
        betas = torch.linspace(a, b, n, dtype=torch.float64) ** 0.5
    else:
        raise ConfigError(f"beta_schedule {spec.beta_schedule!r} is not supported (linear, sqrt_linear, sqrt)")
    return torch.cumprod(1.0 - betas, dim=0)


def make_scale_arr(spec: LDMModelSpec) -> torch.Tensor | None:
    """VideoCrafter's signal scale ``s_t``: linear ``scale_a -> scale_b`` over ``mid_step`` steps, then flat."""
    if not spec.use_scale:
        return None
    tail = spec.num_timesteps - spec.mid_step if spec.fix_scale_bug else spec.num_timesteps
    head = np.linspace(spec.scale_a, spec.scale_b, spec.mid_step)
    return torch.tensor(np.concatenate([head, np.full(tail, spec.scale_b)]), dtype=torch.float32)


class DDIMSampler:
    """DDIM (Song et al. 2021) over LDM's "uniform" step selection, with optional signal scaling.

    After :meth:`set_timesteps`, ``timesteps`` is the descending ``(S,)`` LongTensor of model
    timesteps ``[T - T//S + 1, ..., 1]`` and ``config.num_train_timesteps`` is ``T``.
    Step ``i`` (``index = S - 1 - i``), with ``a_t = alpha_bar[t_i]``, ``a_prev`` the previous
    selected value (``alpha_bar[0]`` for the last step):

    1. ``x0 = (x - sqrt(1 - a_t) eps) / sqrt(a_t)`` (divided by ``s_t`` with ``use_scale``);
    2. ``sigma = eta sqrt((1 - a_prev) / (1 - a_t) (1 - a_t / a_prev))``;
    3. ``x_prev = sqrt(a_prev) s_prev x0 + sqrt(1 - a_prev - sigma^2) eps + sigma z``.
    """

    def __init__(self, alphas_cumprod: torch.Tensor, scale_arr: torch.Tensor | None = None):
        self.alphas_cumprod = alphas_cumprod.to(torch.float64)
        self.scale_arr = scale_arr
        self.config = SimpleNamespace(num_train_timesteps=int(alphas_cumprod.shape[0]))
        self.timesteps = torch.empty(0, dtype=torch.long)
        self.eta = 0.0

    def set_timesteps(self, num_inference_steps: int, eta: float = 0.0) -> None:
        total = self.config.num_train_timesteps
        if not 1 <= num_inference_steps <= total:
            raise ValueError(f"num_inference_steps must be in [1, {total}], got {num_inference_steps}")
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        stride = total // num_inference_steps
        ascending = np.arange(0, total, stride) + 1  # may hold more than S steps when S does not divide T
        if ascending[-1] >= total:
            raise ValueError(
                f"num_inference_steps={num_inference_steps}: LDM's uniform DDIM spacing (every {stride} steps, +1) "
                f"would reach timestep {ascending[-1]} >= {total}; use e.g. a divisor of {total} such as 50"
            )
        ac = self.alphas_cumprod.float().double().numpy()  # the research code keeps alpha_bar in float32
        alphas = ac[ascending]
        alphas_prev = np.concatenate([[ac[0]], ac[ascending[:-1]]])
        sigmas = eta * np.sqrt((1 - alphas_prev) / (1 - alphas) * (1 - alphas / alphas_prev))
        self._ascending = ascending
        # float32 per-step constants, as the research sampler holds them
        self._a = torch.tensor(alphas, dtype=torch.float32)
        self._a_prev = torch.tensor(alphas_prev, dtype=torch.float32)
        self._sigma = torch.tensor(sigmas, dtype=torch.float32)
        self._sqrt_1m_a = torch.tensor(np.sqrt(1.0 - alphas), dtype=torch.float32)
        if self.scale_arr is not None:
            s = self.scale_arr
            self._s = s[ascending]
            self._s_prev = torch.cat([s[:1], s[ascending[:-1]]])
        self.eta = eta
        self.timesteps = torch.from_numpy(ascending[::-1].copy()).long()

    init_noise_sigma = 1.0

    def scale_model_input(self, x: torch.Tensor, t) -> torch.Tensor:
        """DDIM feeds the latents as they are (the diffusers scheduler protocol)."""
        return x

    def step(self, eps: torch.Tensor, t, x: torch.Tensor, generator: torch.Generator | None = None):
        """One update from ``x`` at timestep ``t`` (one of :attr:`timesteps`); returns an object with
        ``prev_sample`` and ``pred_original_sample`` (the diffusers scheduler protocol)."""
        t = int(t)
        hits = (self.timesteps == t).nonzero()
        if len(hits) != 1:
            raise ValueError(f"timestep {t} is not one of this sampler's timesteps")
        i = int(hits[0])
        index = len(self.timesteps) - 1 - i
        a_t, a_prev, sigma = self._a[index], self._a_prev[index], self._sigma[index]
        pred_x0 = (x - self._sqrt_1m_a[index] * eps) / a_t.sqrt()
        direction = (1.0 - a_prev - sigma**2).sqrt() * eps
        noise = 0.0
        if sigma > 0:
            noise = sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if self.scale_arr is not None:
            pred_x0 = pred_x0 / self._s[index]
            prev = a_prev.sqrt() * self._s_prev[index] * pred_x0 + direction + noise
        else:
            prev = a_prev.sqrt() * pred_x0 + direction + noise
        return SimpleNamespace(prev_sample=prev, pred_original_sample=pred_x0)


# ---------------------------------------------------------------------------------------------- text
def _part_folder(path: Path, part: str) -> Path:
    """``path`` itself, or its ``part`` subfolder (``tokenizer`` / ``text_encoder``) when ``path`` is a
    diffusers-style model folder that has one."""
    sub = path / part
    return sub if sub.is_dir() and not (path / "vocab.json").is_file() and not (path / "config.json").is_file() else path


class _HFCLIPText(torch.nn.Module):
    """LVDM's frozen CLIP text encoder: ``last_hidden_state`` of ``CLIPTextModel`` (77 tokens)."""

    def __init__(self, clip_path: str | Path, max_length: int = 77):
        super().__init__()
        from transformers import CLIPTextModel, CLIPTokenizer

        path = Path(clip_path)
        if not path.is_dir():
            raise ModelLoadError(f"CLIP folder not found: {path}")
        try:
            self.tokenizer = CLIPTokenizer.from_pretrained(str(_part_folder(path, "tokenizer")))
            self.transformer = CLIPTextModel.from_pretrained(str(_part_folder(path, "text_encoder")))
        except (OSError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelLoadError(f"cannot load a CLIP tokenizer + text model from {path}: {first}") from None
        self.max_length = max_length

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(
            texts, truncation=True, max_length=self.max_length, padding="max_length", return_tensors="pt"
        )["input_ids"].to(self.transformer.device)
        return self.transformer(input_ids=ids).last_hidden_state


class _OpenCLIPText(torch.nn.Module):
    """VideoCrafter's OpenCLIP text encoder: weights from the checkpoint, BPE tokenizer from a folder."""

    def __init__(self, state: dict, clip_path: str | Path | None, layer: str):
        super().__init__()
        from .open_clip_text import OpenCLIPTextEncoder

        if clip_path is None:
            raise ModelLoadError(
                "VideoCrafter needs --clip PATH: a CLIP BPE tokenizer folder (vocab.json + merges.txt), "
                "e.g. the 'tokenizer' folder of Stable Diffusion 2.x"
            )
        path = Path(clip_path)
        if not path.is_dir():
            raise ModelLoadError(f"tokenizer folder not found: {path}")
        from transformers import CLIPTokenizer

        try:
            self.tokenizer = CLIPTokenizer.from_pretrained(str(_part_folder(path, "tokenizer")))
        except (OSError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelLoadError(f"cannot load a CLIP tokenizer from {path}: {first}") from None
        self.model = OpenCLIPTextEncoder.from_state_dict(state, layer=layer)

    def forward(self, texts: list[str]) -> torch.Tensor:
        from .open_clip_text import open_clip_token_ids

        ids = open_clip_token_ids(self.tokenizer, texts, self.model.context_length)
        return self.model(ids.to(self.model.positional_embedding.device))


def _strip(state: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def load_checkpoint_state(ckpt_path: str | Path) -> dict:
    """The flat ``state_dict`` of a ``.ckpt`` (``{'state_dict': ...}`` or bare), tensors only."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise ModelLoadError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError, EOFError ... from torch.load
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelLoadError(
            f"cannot read {path} with weights_only=True (only tensors are loaded, pickled code is never run): {first}"
        ) from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path}: expected a dict of tensors (optionally under 'state_dict')")
    return state


# ---------------------------------------------------------------------------------------------- pipeline
class LDMVideoPipeline:
    """Text-to-video with an LVDM or VideoCrafter checkpoint.

    Attributes: ``unet``, ``vae``, ``text_encoder``, ``scheduler`` (:class:`DDIMSampler`),
    ``family`` (``"lvdm"`` / ``"videocrafter"``), ``train_size`` ``(H, W)`` pixels,
    ``vae_scale_factor``, ``default_fps`` (fps of written files), ``fps_condition``
    (VideoCrafter's fps embedding input), ``decode_chunk_size`` (frames per VAE call).
    """

    def __init__(self, spec: LDMModelSpec, unet, vae: AutoencoderKL, text_encoder, device="cpu", dtype=torch.float32):
        self.spec = spec
        self.family = spec.family
        self.unet = unet.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.text_encoder = text_encoder.eval().requires_grad_(False)
        self.scheduler = DDIMSampler(make_alphas_cumprod(spec), make_scale_arr(spec))
        self.vae_scale_factor = vae.downsample_factor
        self.train_size = (spec.latent_size[0] * self.vae_scale_factor, spec.latent_size[1] * self.vae_scale_factor)
        guidance, save_fps, fps_cond = DEFAULTS[spec.family]
        self.default_guidance_scale = guidance
        self.default_fps = save_fps
        self.fps_condition = fps_cond if getattr(unet, "fps_cond", False) else None
        self.default_num_frames = spec.num_frames
        self.defaults = {
            "num_frames": spec.num_frames, "fps": save_fps, "guidance_scale": guidance,
            "num_inference_steps": 50, "eta": 1.0,
        }
        self.decode_chunk_size = 1
        self.device = torch.device(device)
        self.dtype = dtype
        for module in (self.unet, self.vae, self.text_encoder):
            module.to(self.device, dtype)
        self.unet.dtype = dtype  # the UNets cast their input to .dtype (float32 unless use_fp16)
        levels = len(getattr(unet, "channel_mult", (1,)))
        self._latent_multiple = 2 ** (levels - 1)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_checkpoint(
        cls, ckpt_path, config_path, clip_path=None, device="cpu", dtype=torch.float32
    ) -> LDMVideoPipeline:
        """Build from a research checkpoint and its original YAML; strict about every key."""
        spec = read_model_config(config_path)
        state = load_checkpoint_state(ckpt_path)
        known = (UNET_PREFIX, VAE_PREFIX, TEXT_PREFIX)
        unexpected = sorted(k for k in state if not k.startswith(known) and k not in SCHEDULE_BUFFERS)
        if unexpected:
            raise ModelLoadError(f"{ckpt_path}: unexpected key(s) {', '.join(unexpected[:5])}")
        _check_schedule(state, spec, ckpt_path)

        unet = build_unet(spec)
        load_state_dict_strict(unet, _strip(state, UNET_PREFIX), f"{ckpt_path} [{UNET_PREFIX}*]")
        try:
            vae = AutoencoderKL(**spec.vae_params)
        except (TypeError, KeyError) as exc:
            raise ConfigError(f"first_stage_config.params: {exc}") from None
        load_state_dict_strict(vae, _strip(state, VAE_PREFIX), f"{ckpt_path} [{VAE_PREFIX}*]")

        text_state = {k: v for k, v in _strip(state, TEXT_PREFIX).items() if k not in _IGNORED_TEXT_BUFFERS}
        target = spec.text_target.rsplit(".", 1)[-1]
        if target == "FrozenOpenCLIPEmbedder":
            layer = spec.text_params.get("layer", "last")
            text_encoder = _OpenCLIPText(_strip(text_state, "model."), clip_path, layer)
            load_state_dict_strict(text_encoder.model, _strip(text_state, "model."), f"{ckpt_path} [{TEXT_PREFIX}model.*]")
            stray = sorted(k for k in text_state if not k.startswith("model."))
            if stray:
                raise ModelLoadError(f"{ckpt_path}: unexpected key(s) {TEXT_PREFIX}{stray[0]}")
        elif target == "FrozenCLIPEmbedder":
            if clip_path is None:
                raise ModelLoadError(
                    "LVDM needs --clip PATH: a local folder with the CLIP tokenizer and text model "
                    "(openai/clip-vit-large-patch14)"
                )
            text_encoder = _HFCLIPText(clip_path, int(spec.text_params.get("max_length", 77)))
            if text_state:  # the checkpoint carries its own copy of the text encoder: it wins
                weights = _match_text_model_prefix(_strip(text_state, "transformer."), text_encoder.transformer)
                load_state_dict_strict(text_encoder.transformer, weights, f"{ckpt_path} [{TEXT_PREFIX}transformer.*]")
                stray = sorted(k for k in text_state if not k.startswith("transformer."))
                if stray:
                    raise ModelLoadError(f"{ckpt_path}: unexpected key(s) {TEXT_PREFIX}{stray[0]}")
        else:
            raise ModelLoadError(f"{config_path}: unsupported text encoder {spec.text_target!r}")
        return cls(spec, unet, vae, text_encoder, device=device, dtype=dtype)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def encode_prompt(self, texts: list[str]) -> torch.Tensor:
        """``len(texts)`` prompts -> ``(len(texts), 77, context_dim)`` text tokens."""
        return self.text_encoder(list(texts)).to(self.dtype)

    def check_size(self, height: int, width: int) -> None:
        """Raise :class:`ConfigError` unless both sides are positive multiples of the size unit
        (VAE factor x the UNet's total downsampling, so skip connections line up)."""
        mult = self.vae_scale_factor * self._latent_multiple
        for name, v in (("height", height), ("width", width)):
            if not isinstance(v, int) or v <= 0 or v % mult:
                raise ConfigError(
                    f"{name} must be a positive multiple of {mult} for this model "
                    f"({self.vae_scale_factor} px per latent x {self._latent_multiple} UNet downsampling), got {v!r}"
                )

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        negative_prompt: str | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = 16,
        num_inference_steps: int | None = 50,
        guidance_scale: float | None = None,
        eta: float | None = 1.0,
        generator: torch.Generator | None = None,
        progress: bool = True,
        fps: int | None = None,
        output_type: str = "np",
        latents: torch.Tensor | None = None,
        start_step: int = 0,
        callback=None,
        chunk_size: int | None = None,
        tile_size: int | None = None,
    ) -> np.ndarray:
        """Sample videos: ``uint8`` array ``(B, F, H, W, 3)`` (``output_type="latent"``: the final
        ``(B, 4, F, h, w)`` latents as a tensor). ``fps`` is VideoCrafter's fps conditioning value.
        ``None`` for ``num_frames`` / ``num_inference_steps`` / ``guidance_scale`` / ``eta`` means
        the family default (:attr:`defaults`). ``latents`` + ``start_step`` resume sampling from
        given latents at that step (LR guidance)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise ConfigError("prompt must be a string or a non-empty list of strings")
        if tile_size is not None:
            raise ConfigError("--tile-size is not supported for LVDM / VideoCrafter checkpoints (their autoencoder "
                              "decodes one frame at a time; --chunk-size sets frames per call)")
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            raise ConfigError("negative_prompt must be a string")
        height = self.train_size[0] if height is None else height
        width = self.train_size[1] if width is None else width
        num_frames = self.defaults["num_frames"] if num_frames is None else num_frames
        num_inference_steps = self.defaults["num_inference_steps"] if num_inference_steps is None else num_inference_steps
        eta = self.defaults["eta"] if eta is None else float(eta)
        self.check_size(height, width)
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ConfigError(f"num_frames must be a positive integer, got {num_frames!r}")
        h, w = height // self.vae_scale_factor, width // self.vae_scale_factor
        scale = self.default_guidance_scale if guidance_scale is None else float(guidance_scale)
        if output_type not in ("np", "latent"):
            raise ConfigError(f"output_type must be 'np' or 'latent', got {output_type!r}")
        b = len(prompts)

        cond = self.encode_prompt(prompts)
        uncond = None
        if uses_cfg(cond, scale):
            if negative_prompt is None and self.spec.uncond_type == "zero_embed":
                uncond = torch.zeros_like(cond)
            else:
                uncond = self.encode_prompt([negative_prompt or ""] * b)
        sched = self.scheduler
        try:
            sched.set_timesteps(num_inference_steps, eta)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if not 0 <= start_step < len(sched.timesteps):
            raise ConfigError(f"start_step must be in [0, {len(sched.timesteps)}), got {start_step}")
        shape = (b, self.spec.channels, num_frames, h, w)
        if latents is None:
            x = torch.randn(shape, generator=generator, device=self.device, dtype=self.dtype)
        elif tuple(latents.shape) != shape:
            raise ConfigError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        else:
            x = latents.to(self.device, self.dtype)

        def model(x_in, t, ctx):
            ts = torch.full((x_in.shape[0],), int(t), dtype=torch.long, device=self.device)
            extra = {}
            if self.fps_condition is not None:
                value = self.fps_condition if fps is None else int(fps)
                extra["fps"] = torch.full((x_in.shape[0],), value, dtype=torch.long, device=self.device)
            return self.unet(x_in, ts, context=ctx, **extra)

        x = sample_loop(model, sched, x, cond, uncond, guidance_scale=scale, start_step=start_step,
                        generator=generator, progress=progress, callback=callback)
        if output_type == "latent":
            return x
        if chunk_size is not None:
            self.decode_chunk_size = int(chunk_size)
        return self.decode_latents(x, progress=progress)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, progress: bool = True) -> np.ndarray:
        """``(B, 4, F, h, w)`` latents -> ``uint8`` ``(B, F, H, W, 3)``, ``decode_chunk_size`` frames per call."""
        from tqdm.auto import tqdm

        total = latents.shape[0] * latents.shape[2]
        bar = tqdm(total=total, desc="VAE decode", disable=not progress)
        state = {"done": 0}

        def on_chunk(done, _total):
            bar.update(done - state["done"])
            state["done"] = done

        video = self.vae.decode_video(latents / self.spec.scale_factor, self.decode_chunk_size, on_chunk)
        bar.close()
        return signed_to_uint8(rearrange(video, "b c f h w -> b f h w c"))


def _match_text_model_prefix(weights: dict, model: torch.nn.Module) -> dict:
    """transformers < 5 stored CLIPTextModel weights under ``text_model.``; newer versions do not."""
    own_prefixed = any(k.startswith("text_model.") for k in model.state_dict())
    given_prefixed = any(k.startswith("text_model.") for k in weights)
    if given_prefixed and not own_prefixed:
        return {k.removeprefix("text_model."): v for k, v in weights.items()}
    if own_prefixed and not given_prefixed:
        return {f"text_model.{k}": v for k, v in weights.items()}
    return weights


def _check_schedule(state: dict, spec: LDMModelSpec, ckpt_path) -> None:
    """A checkpoint's stored ``alphas_cumprod`` must agree with the config's beta schedule."""
    stored = state.get("alphas_cumprod")
    if stored is None:
        return
    expected = make_alphas_cumprod(spec).float()
    if stored.shape != expected.shape or not torch.allclose(stored.float(), expected, atol=1e-5):
        raise ModelLoadError(
            f"{ckpt_path}: stored alphas_cumprod do not match the config's beta schedule "
            f"({spec.beta_schedule}, {spec.linear_start}..{spec.linear_end}, {spec.num_timesteps} steps)"
        )
