#!/usr/bin/env python
"""How much would a perfect denoiser gain from each prompt word, next to what the demo model gains?

The training loss rewards a word only as far as knowing it lowers the best achievable error. This
script measures that reward on the training script's held-out probe (``train_demo_model.make_probe``:
the same clips, noise, timesteps and word swaps as the model card's "word gaps"), once for the
Bayes-optimal denoiser of the scene world and once for the model, side by side:

* **oracle**: ``E[x0 | x_t, prompt]``, a posterior mean over ``--bank`` scenes drawn for the prompt
  (for the empty prompt, over every prompt of the grammar), each weighted by the likelihood of
  ``x_t`` under the forward noising. Its v-prediction error is ``|x0 - x0_hat|^2 / (1 - a_t)``.
  Where the noise is low the weights pile onto a few bank scenes; the effective sample size (ESS)
  column says where the estimate is sound; the mean row and the shares use only timesteps whose
  median ESS is at least 50.
* **model**: the demo model's loss on the same probe (``train_demo_model.probe_losses``).

A gap is ``loss(word swapped) / loss(true prompt) - 1``; "model / oracle" is the share of the
available reward the model has taken. Last, the share of each word swap's change to the oracle's
prediction at the noisiest timestep (the prompt's mean clip) that is the same in every frame: a
spatial cross-attention that reads the prompt alike in every frame can write such a change directly.

    python scripts/oracle_word_gaps.py                       # the embedded model, 4096 scenes per prompt
    python scripts/oracle_word_gaps.py --bank 1024           # quicker, to see the estimate settle
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from scalecrafter_video.demo.model import FRAMES, TRAIN_SIZE, build_scheduler  # noqa: E402
from scalecrafter_video.demo.scenes import all_prompts, render_batch, scene_from_prompt  # noqa: E402
from scalecrafter_video.demo.showcase import load_demo_pipeline  # noqa: E402
from train_demo_model import PROBE_T, gaps_from_losses, make_probe, probe_losses, probe_prompts  # noqa: E402

WORDS = ("colour", "shape", "direction", "empty")
SOUND_ESS = 50  # effective scenes behind a posterior mean below which its gaps are not reported


class PosteriorMean:
    """Running ``E[x0 | x_t]`` over scene banks seen chunk by chunk (a streamed, max-shifted softmax).

    ``x_t``: ``(Q, D)`` noised clips, flattened; ``a``: ``(Q,)`` their ``alphas_cumprod``."""

    def __init__(self, x_t: torch.Tensor, a: torch.Tensor):
        self.x_t, self.a = x_t.float(), a.double()
        q, d = x_t.shape
        self.top = torch.full((q,), -torch.inf, dtype=torch.float64)
        self.weight = torch.zeros(q, dtype=torch.float64)
        self.weight_sq = torch.zeros(q, dtype=torch.float64)
        self.sum = torch.zeros(q, d, dtype=torch.float64)

    def add(self, bank: torch.Tensor, rows: list[int]) -> None:
        """``bank``: ``(N, D)`` clean clips drawn from the prior of the queries ``rows``."""
        a = self.a[rows][:, None]
        # log N(x_t; sqrt(a) x0, (1 - a) I) up to terms free of x0; float32 products, float64 sums
        logw = (a.sqrt() / (1 - a)) * (self.x_t[rows] @ bank.T).double() - (a / (2 * (1 - a))) * (bank * bank).sum(1).double()
        top = torch.maximum(self.top[rows], logw.max(1).values)
        shrink = torch.exp(self.top[rows] - top)
        w = torch.exp(logw - top[:, None])
        self.weight[rows] = self.weight[rows] * shrink + w.sum(1)
        self.weight_sq[rows] = self.weight_sq[rows] * shrink**2 + (w * w).sum(1)
        self.sum[rows] = self.sum[rows] * shrink[:, None] + (w.float() @ bank).double()
        self.top[rows] = top

    def mean(self) -> torch.Tensor:
        return self.sum / self.weight[:, None]

    def ess(self) -> torch.Tensor:
        """Effective sample size of each query's weights: near 1 = the bank is too small there."""
        return self.weight**2 / self.weight_sq


def bank_for(prompt: str, count: int, seed: int, index: int, ramp: float) -> torch.Tensor:
    rng = np.random.default_rng([seed, index])
    scenes = [scene_from_prompt(prompt, rng, FRAMES) for _ in range(count)]
    clips = torch.from_numpy(render_batch(scenes, *TRAIN_SIZE, FRAMES, ramp=ramp)).permute(0, 4, 1, 2, 3) * 2 - 1
    return clips.reshape(count, -1)  # (N, C*F*H*W), the probe's (B, C, F, H, W) order


def frame_constant_share(change: torch.Tensor) -> float:
    """The share of a change to clips ``(B, C, F, H, W)`` that is the same in every frame: a word whose
    change is frame-constant can be written into each frame alike; one whose change is not needs the
    word, the frame and the place together."""
    same = change.mean(2, keepdim=True).expand_as(change)
    return float((same**2).sum() / (change**2).sum())


def oracle_losses(x0, noise, variants, ramp, alphas_cumprod, bank: int, chunk: int, seed: int):
    """``({variant: [loss per t]}, {t: median ESS of the true prompt}, {word: frame-constant share})``
    of the Bayes-optimal denoiser; the shares are of the change a word swap makes to its prediction
    at the noisiest probe timestep, where that prediction is the prompt's mean clip."""
    flat = x0.reshape(x0.shape[0], -1).double()
    a = torch.stack([alphas_cumprod[t] for t in PROBE_T]).double()
    # one query per (variant, clip, timestep): the clip noised at that timestep
    queries = [(k, i, j) for k in variants for i in range(len(flat)) for j in range(len(PROBE_T))]
    x_t = torch.stack([a[j].sqrt() * flat[i] + (1 - a[j]).sqrt() * noise[j, i].reshape(-1).double() for _, i, j in queries])
    post = PosteriorMean(x_t, a[[j for *_, j in queries]])
    for index, prompt in enumerate(all_prompts()):
        rows = [n for n, (k, i, _) in enumerate(queries) if variants[k][i] in (prompt, "")]
        if not rows:
            continue
        for start in range(0, bank, chunk):
            post.add(bank_for(prompt, min(chunk, bank - start), seed, index * 1000 + start // chunk, ramp), rows)
    means = post.mean()
    err = ((means - flat[[i for _, i, _ in queries]]) ** 2).mean(1) / (1 - post.a)  # v-prediction MSE
    losses = {k: [0.0] * len(PROBE_T) for k in variants}
    for (k, _, j), e in zip(queries, err.tolist()):
        losses[k][j] += e / len(flat)
    ess = post.ess()
    true_ess = {t: float(ess[[n for n, (k, _, j) in enumerate(queries) if k == "true" and j == jj]].median())
                for jj, t in enumerate(PROBE_T)}
    j = len(PROBE_T) - 1
    pick = lambda k: means[[n for n, (kk, _, jj) in enumerate(queries) if kk == k and jj == j]]  # noqa: E731
    shares = {k: frame_constant_share((pick(k) - pick("true")).reshape(x0.shape)) for k in variants if k != "true"}
    return losses, true_ess, shares


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="demo model folder (default: the embedded one)")
    p.add_argument("--bank", type=int, default=4096, help="scenes drawn per prompt for the posterior (default 4096)")
    p.add_argument("--chunk", type=int, default=512, help="scenes rendered and weighed at a time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if args.bank < 1 or args.chunk < 1:
        p.error("--bank and --chunk must be positive")
    torch.set_num_threads(args.threads)
    pipe = load_demo_pipeline(args.model)
    alphas = build_scheduler().alphas_cumprod
    probe = make_probe(pipe.tokenizer)
    model = probe_losses(pipe.unet, pipe.text_encoder, probe, alphas)
    _, ramp, variants = probe_prompts()
    started = time.perf_counter()
    oracle, ess, shares = oracle_losses(probe[0], probe[1], variants, ramp, alphas, args.bank, args.chunk, args.seed)
    print(f"model {args.model or 'the embedded demo model'}; oracle from {args.bank} scenes per prompt "
          f"({time.perf_counter() - started:.0f} s); gaps = loss(word swapped) / loss(true prompt) - 1\n")
    print("| t | ESS (true prompt) | " + " | ".join(f"{w}: oracle / model" for w in WORDS) + " |")
    print("|---|---|" + "---|" * len(WORDS))
    for j, t in enumerate(PROBE_T):
        cells = [f"{oracle[w][j] / oracle['true'][j] - 1:+.1%} / {model[w][j] / model['true'][j] - 1:+.1%}" for w in WORDS]
        mark = "" if ess[t] >= SOUND_ESS else " (too few scenes: the oracle's gaps are not sound here)"
        print(f"| {t} | {ess[t]:.0f}{mark} | " + " | ".join(cells) + " |")
    sound = [j for j, t in enumerate(PROBE_T) if ess[t] >= SOUND_ESS]
    if not sound:
        print(f"\nno timestep has an ESS of {SOUND_ESS} or more: draw a larger --bank")
        return 0
    og = gaps_from_losses({k: [v[j] for j in sound] for k, v in oracle.items()})
    mg = gaps_from_losses({k: [v[j] for j in sound] for k, v in model.items()})
    print(f"| mean over t = {', '.join(str(PROBE_T[j]) for j in sound)} | | "
          + " | ".join(f"{og[w]:+.1%} / {mg[w]:+.1%}" for w in WORDS) + " |")
    print("\nshare of the oracle's gap the model takes there: "
          + ", ".join(f"{w} {mg[w] / og[w]:.0%}" if og[w] > 0 else f"{w} -" for w in WORDS))
    print(f"share of the oracle's change at t = {PROBE_T[-1]} (the prompt's mean clip) that is the same in every "
          "frame: " + ", ".join(f"{w} {shares[w]:.0%}" for w in WORDS))
    return 0


if __name__ == "__main__":
    from scalecrafter_video.errors import run_script

    run_script(main)
