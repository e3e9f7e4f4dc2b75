"""Evaluation metrics. FVD/KVD with the TF-Hub Kinetics-400 I3D (``fvd``, ``i3d``, ``preprocess``)."""

from .fvd import FVDResult, compute_fvd, frechet_distance, i3d_features, kernel_distance
from .i3d import load_i3d
from .preprocess import preprocess_videos

__all__ = [
    "load_i3d",
    "preprocess_videos",
    "i3d_features",
    "frechet_distance",
    "kernel_distance",
    "compute_fvd",
    "FVDResult",
]
