#!/usr/bin/env python
"""Does a demo model know which way time runs, and does the direction word move its objects?

At the first denoising steps (t = 999, 950), where the trajectory of the object is settled, it reads
the model's x0 prediction from noise alone:

* **clock**: the x0 background level of frames 0..7 for one noise frame repeated 8 times (a
  time-symmetric input). The world's background brightens over every clip
  (``scenes.BACKGROUND_RAMP``); a model that has no clock returns a flat or symmetric profile.
* **direction response**: the displacement (x0 centroid, last frame minus first) under each
  direction word, the same noise for all four, averaged over ``--seeds`` noises; the spread
  between the words is what the prompt adds to the motion the noise already implies.

    python scripts/probe_demo_motion.py                       # the embedded demo model
    python scripts/probe_demo_motion.py --model models/shapes-t2v-stages/stage4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scalecrafter_video.demo.model import build_scheduler  # noqa: E402
from scalecrafter_video.demo.showcase import load_demo_pipeline  # noqa: E402
from scalecrafter_video.demo.scenes import DIRECTIONS  # noqa: E402


@torch.no_grad()
def x0_from_noise(unet, context, noise, t: int, alphas_cumprod) -> torch.Tensor:
    """The x0 prediction ``(B, 3, F, H, W)`` at timestep ``t`` for ``x_t = sqrt(1 - a) * noise``."""
    a = alphas_cumprod[t]
    x_t = (1 - a).sqrt() * noise
    v = unet(x_t, torch.full((noise.shape[0],), t), encoder_hidden_states=context).sample
    return a.sqrt() * x_t - (1 - a).sqrt() * v


def displacement(x0: torch.Tensor) -> np.ndarray:
    """``(B, 2)`` (dx, dy) in pixels of the x0 foreground centroid, last frame minus first."""
    bg = x0.flatten(3).median(-1).values[..., None, None]
    w = (x0 - bg).abs().sum(1)
    w = (w - w.mean(dim=(2, 3), keepdim=True)).clamp(min=0)  # (B, F, H, W)
    h, wd = w.shape[-2:]
    ys = torch.arange(h, dtype=w.dtype).view(1, 1, h, 1)
    xs = torch.arange(wd, dtype=w.dtype).view(1, 1, 1, wd)
    cy = (w * ys).sum((2, 3)) / w.sum((2, 3))
    cx = (w * xs).sum((2, 3)) / w.sum((2, 3))
    return torch.stack([cx[:, -1] - cx[:, 0], cy[:, -1] - cy[:, 0]], 1).numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="demo model folder (default: the embedded one)")
    p.add_argument("--seeds", type=int, default=8, help="noises to average the direction response over")
    p.add_argument("--prompt", default="a red circle moving {}", help="prompt with {} for the direction word")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = load_demo_pipeline(args.model)  # the project's loader: one clear error for a wrong folder
    unet, text, tok = pipe.unet, pipe.text_encoder, pipe.tokenizer
    alphas = build_scheduler().alphas_cumprod
    words = list(DIRECTIONS)
    ids = tok([args.prompt.format(w) for w in words], padding="max_length", max_length=tok.model_max_length,
              truncation=True, return_tensors="pt").input_ids
    context = text(ids)[0]
    size = unet.config.sample_size
    frames = 8
    print(f"model {args.model or 'the embedded demo model'}")
    for t in (999, 950):
        frame = torch.randn(1, 3, 1, size, size, generator=torch.Generator().manual_seed(0))
        x0 = x0_from_noise(unet, context[:1], frame.repeat(1, 1, frames, 1, 1), t, alphas)
        level = x0[0].flatten(2).median(-1).values.mean(0).numpy()  # (F,) background level, model space
        print(f"t={t} clock (x0 background, frames 0..{frames - 1}, static noise): {' '.join(f'{v:+.3f}' for v in level)}")
        moves = []
        for seed in range(args.seeds):
            noise = torch.randn(1, 3, frames, size, size, generator=torch.Generator().manual_seed(seed + 1))
            moves.append(displacement(x0_from_noise(unet, context, noise.repeat(len(words), 1, 1, 1, 1), t, alphas)))
        moves = np.stack(moves)  # (seeds, words, 2)
        mean = moves.mean(0)
        along = np.mean([moves[:, i] @ np.asarray(DIRECTIONS[w]) for i, w in enumerate(words)])
        spread = np.abs(moves - moves.mean(1, keepdims=True)).mean()
        print(f"t={t} displacement by word (mean of {args.seeds} noises, px): "
              + ", ".join(f"{w} ({mean[i, 0]:+.2f}, {mean[i, 1]:+.2f})" for i, w in enumerate(words)))
        print(f"t={t} along the prompted direction: {along:+.2f} px; spread between words: {spread:.2f} px")
    return 0


if __name__ == "__main__":
    from scalecrafter_video.errors import run_script

    run_script(main)
