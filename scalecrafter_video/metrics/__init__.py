"""Evaluation metrics.

- FVD / KVD with the TF-Hub Kinetics-400 I3D: :mod:`.fvd` (the protocol), :mod:`.stats` (Frechet and
  kernel distances), :mod:`.inputs` (video sets, the clip rule), :mod:`.features` (embedding, cache,
  sharding), :mod:`.preprocess` (the TF1 resize), :mod:`.i3d` (the network), :mod:`.i3d_weights`;
- :mod:`.ground_truth`: per-frame object / colour / motion metrics against the demo world's scenes.
"""

from .features import i3d_features
from .fvd import FVDResult, compute_fvd
from .i3d_weights import load_i3d
from .preprocess import preprocess_videos
from .stats import frechet_distance, kernel_distance

__all__ = [
    "load_i3d",
    "preprocess_videos",
    "i3d_features",
    "frechet_distance",
    "kernel_distance",
    "compute_fvd",
    "FVDResult",
]
