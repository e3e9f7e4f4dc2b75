#!/usr/bin/env python
"""Train the embedded demo text-to-video model (``models/shapes-t2v``) on synthetic scenes.

A pixel-space ``UNet3DConditionModel`` (3 levels, 16/32/64 channels, attention at 8x8 only) and a
tiny ``CLIPTextModel`` are trained jointly with v-prediction on cosine betas (1000 steps) on
8-frame 32x32 videos of one moving shape (:mod:`scalecrafter_video.demo.scenes`), 10% of prompts dropped for
classifier-free guidance. The run is deterministic: step ``k`` draws its scenes, noise, timesteps
and dropout from seeds derived from ``(--seed, k)``, so a resumed run reproduces an uninterrupted
one. A checkpoint (weights, EMA weights, optimiser, step, elapsed time, loss log) is written every
``--save-every`` steps to ``--ckpt-dir`` and picked up automatically on restart; at the end the EMA
weights are exported in diffusers format to ``--out`` with a model card.

    python scripts/train_demo_model.py                       # train (resumes if a checkpoint exists)
    python scripts/train_demo_model.py --export-only         # re-export the latest checkpoint
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scalecrafter_video.demo.scenes import BACKGROUND_RAMP, render_batch, sample_scene  # noqa: E402
from scalecrafter_video.demo.model import (  # noqa: E402
    FRAMES,
    MAX_TOKENS,
    TRAIN_SIZE,
    UNET_KWARGS,
    build_scheduler,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    save_demo_model,
)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "models" / "shapes-t2v"), help="diffusers folder to export to")
    p.add_argument("--ckpt-dir", default=str(REPO / "models" / "shapes-t2v-ckpt"), help="resumable checkpoints")
    p.add_argument("--steps", type=int, default=2000, help="optimiser steps (default 2000)")
    p.add_argument("--batch", type=int, default=8, help="videos per step (default 8)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW; cosine decay to 10%%)")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--ema", type=float, default=0.995, help="EMA decay cap (weights exported from the EMA)")
    p.add_argument("--p-uncond", type=float, default=0.1, help="probability of an empty prompt (for CFG)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2; use 1 on a busy machine)")
    p.add_argument("--save-every", type=int, default=100)
    p.add_argument("--world", choices=sorted(WORLDS), default="v2",
                   help="scene ranges: v2 (default, the project's scenes) or v1 (slower motion, wider box)")
    p.add_argument("--stop-at", type=int,
                   help="end (and export) at this step; the learning-rate schedule still spans --steps")
    p.add_argument("--init-from", help="start from the weights of an exported demo model folder (a warm start; "
                   "the model card records it)")
    p.add_argument("--text-encoder", choices=("train", "frozen"), default="train",
                   help="train the text encoder with the UNet (v1), or keep it frozen at its seeded random "
                        "initialisation (v2: trained jointly, v1's encoder amplified the colour word and "
                        "shrank the shape and direction words until the UNet could not tell them apart)")
    p.add_argument("--high-noise", type=float, default=0.0,
                   help="fraction of each batch whose timesteps are drawn from [400, 1000) instead of [0, 1000): "
                        "layout, shape and motion are decided at high noise, so a warm start spends its steps there "
                        "(the range starts at --high-noise-from)")
    p.add_argument("--high-noise-from", type=int, default=400,
                   help="lowest timestep of the --high-noise draw (default 400)")
    p.add_argument("--init-text", action="store_true",
                   help="with --text-encoder frozen, take the frozen encoder from --init-from too (a run that "
                        "continues a frozen-encoder run) instead of a fresh seeded one")
    p.add_argument("--probe-every", type=int, default=250,
                   help="every N steps, log how much the prompt's colour / shape / direction words lower the "
                        "EMA model's loss (0 = never)")
    p.add_argument("--export-only", action="store_true", help="export the latest checkpoint and exit")
    p.add_argument("--default-guidance", type=float, default=1.0,
                   help="the CFG scale stored as the model's sampling default (scalecrafter_video.json); pick it "
                        "with scripts/bench_quality.py at the training size (default 1.0)")
    p.add_argument("--card-metrics", metavar="BENCH_JSON",
                   help="a scripts/bench_quality.py JSON file whose training-size rows go into the model card")
    p.add_argument("--card-note", default="", help="extra paragraph for the model card (e.g. how the run was resumed)")
    return p.parse_args(argv)


def lr_at(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


#: The scene ranges of each training world: demo model v1 (and the first two stages of v2) saw slower
#: motion in a wider box than the world the project's scenes now draw (``demo.scenes``).
WORLDS = {
    "v1": dict(speed_range=(0.025, 0.04), centre_range=(0.32, 0.68), ramp=0.0),
    "v2-flat": dict(ramp=0.0),  # v2's motion, no arrow of time (stages 3 and 4)
    "v2": {},
    # One red circle of one size and speed whose trajectory is centred: the four clips differ only in
    # the direction word, so the high-noise loss rewards nothing else (stage 6, the direction primer).
    "primer": dict(shape="circle", colour="red", size=0.19, speed=0.045, centre_range=(0.5, 0.5)),
    # v2, but half of the clips have their trajectory centred: after the primer, these keep the direction
    # reward large while every colour, shape, size and speed comes back (stage 7)
    "v2-centring": dict(centred_share=0.5),
}


def world_scenes(rng, count: int, world: str):
    """``count`` scenes of a world and the background ramp to render them with."""
    spec = dict(WORLDS[world])
    ramp = spec.pop("ramp", BACKGROUND_RAMP)
    share = spec.pop("centred_share", 0.0)
    centred = dict(spec, centre_range=(0.5, 0.5))
    # the share is drawn only in a world that has one, so the other worlds' streams stay as they were
    return [sample_scene(rng, FRAMES, **(centred if share and rng.random() < share else spec))
            for _ in range(count)], ramp


def make_batch(step: int, args, tokenizer):
    """Scenes, prompts and noise of one step, all from seeds derived from (seed, step)."""
    rng = np.random.default_rng([args.seed, step])
    scenes, ramp = world_scenes(rng, args.batch, args.world)
    video = render_batch(scenes, *TRAIN_SIZE, FRAMES, ramp=ramp)  # (B, F, H, W, 3) in [0, 1]
    x0 = torch.from_numpy(video).permute(0, 4, 1, 2, 3).contiguous() * 2 - 1  # (B, C, F, H, W)
    drop = rng.random(args.batch) < args.p_uncond
    prompts = ["" if d else s.prompt for s, d in zip(scenes, drop)]
    ids = tokenizer(prompts, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, 1000, (args.batch,), generator=gen)
    high = torch.rand(args.batch, generator=gen) < args.high_noise
    t = torch.where(high, args.high_noise_from + t * (1000 - args.high_noise_from) // 1000, t)
    return x0, ids, noise, t, int(rng.integers(2**62))


PROBE_T = (500, 700, 850, 950, 990)
PROBE_SCENES = 24


def probe_prompts(world: str = "v2"):
    """The held-out scenes of :func:`make_probe`, the ramp they are rendered with, and their prompts:
    the true one, one word swapped (colour, shape or direction), and the empty prompt."""
    from scalecrafter_video.demo.scenes import COLOURS, DIRECTIONS, SHAPES

    rng = np.random.default_rng([987654321])
    scenes, ramp = world_scenes(rng, PROBE_SCENES, world)

    def other(options, value):  # the next option round the list: always a different word
        options = list(options)
        return options[(options.index(value) + 1) % len(options)]

    variants = {
        "true": [s.prompt for s in scenes],
        "colour": [f"a {other(COLOURS, s.colour)} {s.shape} moving {s.direction}" for s in scenes],
        "shape": [f"a {s.colour} {other(SHAPES, s.shape)} moving {s.direction}" for s in scenes],
        "direction": [f"a {s.colour} {s.shape} moving {other(DIRECTIONS, s.direction)}" for s in scenes],
        "empty": [""] * len(scenes),
    }
    return scenes, ramp, variants


def make_probe(tokenizer, world: str = "v2"):
    """A fixed held-out set for :func:`text_gaps`: clips ``(B, 3, F, H, W)`` in [-1, 1], noise
    ``(len(PROBE_T), B, 3, F, H, W)`` and the token ids of each prompt variant of :func:`probe_prompts`."""
    scenes, ramp, variants = probe_prompts(world)
    x0 = torch.from_numpy(render_batch(scenes, *TRAIN_SIZE, FRAMES, ramp=ramp)).permute(0, 4, 1, 2, 3).contiguous() * 2 - 1
    gen = torch.Generator().manual_seed(987654321)
    noise = torch.randn((len(PROBE_T),) + tuple(x0.shape), generator=gen)
    ids = {k: tokenizer(v, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids
           for k, v in variants.items()}
    return x0, noise, ids


@torch.no_grad()
def probe_losses(unet, text, probe, alphas_cumprod) -> dict:
    """The v-prediction loss of every prompt variant at every ``PROBE_T``: ``{variant: [loss per t]}``."""
    x0, noise, ids = probe
    losses = {k: [] for k in ids}
    for i, t in enumerate(PROBE_T):
        a = alphas_cumprod[t]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise[i]
        target = a.sqrt() * noise[i] - (1 - a).sqrt() * x0
        tt = torch.full((x0.shape[0],), t)
        for k, v in ids.items():
            pred = unet(xt, tt, encoder_hidden_states=text(v)[0]).sample
            losses[k].append(F.mse_loss(pred, target).item())
    return losses


def gaps_from_losses(losses: dict) -> dict:
    """``loss(variant) / loss(true prompt) - 1`` per variant, the losses averaged over the timesteps."""
    mean = {k: sum(v) / len(v) for k, v in losses.items()}
    return {k: round(mean[k] / mean["true"] - 1, 4) for k in mean if k != "true"} | {"loss": round(mean["true"], 5)}


def text_gaps(unet, text, probe, alphas_cumprod) -> dict:
    """How much each prompt word lowers the loss: ``loss(word swapped) / loss(true prompt) - 1`` per
    word, and the same for the empty prompt, averaged over ``PROBE_T``. Near 0 means the model
    ignores that word (shape and direction of demo model v1 were at chance)."""
    return gaps_from_losses(probe_losses(unet, text, probe, alphas_cumprod))


def atomic_save(obj, path: Path):
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def metrics_table(path: Path) -> str:
    """The 1x rows of a ``scripts/bench_quality.py`` JSON file as a markdown table."""
    data = json.loads(Path(path).read_text())
    meta, rows = data["meta"], []
    size = f"{meta['train_size'][0]}x{meta['train_size'][1]}"
    cols = [("one_object_rate", "one object", "%"), ("colour_accuracy", "colour", "%"),
            ("shape_accuracy", "shape", "%"), ("direction_accuracy", "direction", "%"),
            ("axis_accuracy", "axis", "%"), ("travel", "travel", ""),
            ("temporal_stability", "temporal stab.", "%"), ("scale_error", "scale err", "")]
    rows.append("| videos | guidance | " + " | ".join(c[1] for c in cols) + " |")
    rows.append("|---" * (len(cols) + 2) + "|")
    for method, cell in data["results"].get(size, {}).items():
        if method.startswith("ground truth"):  # the reference and its redraw (the noise floor)
            continue
        summary = cell["summary"]
        vals = ["-" if summary.get(k) is None else f"{100 * summary[k]:.1f}%" if unit == "%" else f"{summary[k]:.3f}"
                for k, _, unit in cols]
        rows.append(f"| {summary['videos']} | {meta['guidance']} | " + " | ".join(vals) + " |")
    return (f"Measured at {size} with `scalecrafter_video.metrics.ground_truth` (DDIM {meta['steps']} steps, the "
            f"benchmark's seeded prompt list, every prompt of the grammar at least once):\n\n" + "\n".join(rows))


def model_card(args, state) -> str:
    log = state["loss_log"]
    last = [l for _, l in log[-100:]]
    final = float(np.mean(last)) if last else float("nan")
    n_unet = sum(v.numel() for v in state["ema_unet"].values())
    n_text = sum(v.numel() for v in state["ema_text"].values())
    saved = state.get("args", {})
    init_from = saved.get("init_from") or args.init_from
    frozen = (saved.get("text_encoder") or args.text_encoder) == "frozen"
    high = saved.get("high_noise", args.high_noise)
    high_from = saved.get("high_noise_from", args.high_noise_from)
    probes = state.get("probes") or []
    probe_line = ""
    if probes:
        step, gaps = probes[-1]
        probe_line = (f"\n- **Word gaps** at step {step} (EMA weights, {PROBE_SCENES} held-out scenes, t in {PROBE_T}: "
                      "how much the loss rises when one prompt word is swapped for another): colour "
                      f"{gaps['colour']:+.1%}, shape {gaps['shape']:+.1%}, direction {gaps['direction']:+.1%}, "
                      f"empty prompt {gaps['empty']:+.1%}.")
    metrics = ("\n## Metrics at the training size\n\n" + metrics_table(Path(args.card_metrics)) + "\n") \
        if args.card_metrics else ""
    text_line = (f"`text_encoder` = `CLIPTextModel` ({n_text / 1e3:.0f}k parameters, 2 layers, width 64) "
                 + ("**frozen at its seeded random initialisation**" if frozen else "trained with the UNet"))
    keep_text = not frozen or saved.get("init_text", args.init_text)
    start = (f"warm start from `{init_from}` (its UNet" + (" and text encoder" if keep_text else
                                                          "; a fresh text encoder") + "), "
             if init_from else "from scratch, ")
    from scalecrafter_video.demo.scenes import CENTRE_RANGE, SPEED_RANGE

    world = saved.get("world", args.world)
    speed = WORLDS[world].get("speed_range", SPEED_RANGE)
    centre = WORLDS[world].get("centre_range", CENTRE_RANGE)
    ramp = WORLDS[world].get("ramp", BACKGROUND_RAMP)
    share = WORLDS[world].get("centred_share", 0.0)
    centred = f" ({share:.0%} of the clips at 0.5, their trajectory centred)" if share else ""
    return f"""# shapes-t2v: the embedded demo text-to-video model

A tiny pixel-space text-to-video diffusion model that draws **one** moving shape on a plain dark
background, trained from scratch on the synthetic scenes of `scalecrafter_video/demo/scenes.py`.
It exists to show ScaleCrafter's failure case and fix on a CPU in seconds: trained at 32x32,
sampled larger it repeats the object (Direct-Inf); re-dilated, it keeps one object.

- **Format**: diffusers folder (`model_index.json`: `TextToVideoSDPipeline`, no VAE, frames in
  [-1, 1]); `unet` = `UNet3DConditionModel` ({n_unet / 1e6:.2f}M parameters, 3 levels
  {UNET_KWARGS['block_out_channels']}, 1 layer per block, attention only at the 8x8 level and the mid block),
  {text_line}, `tokenizer` = `CLIPTokenizer` built locally
  from the prompt grammar (BPE learned on its words; `vocab.json`/`merges.txt` included),
  `scheduler` = `DDIMScheduler` (cosine betas, 1000 steps, v-prediction, trailing spacing).
- **Data** (world {world}): 8 frames of {TRAIN_SIZE[0]}x{TRAIN_SIZE[1]}; one circle/square/triangle, colour
  red/green/blue/yellow, moving left/right/up/down; equal-area radius 0.16-0.22 of the side,
  {speed[0]}-{speed[1]} of the side per frame, trajectory midpoint in {centre[0]}-{centre[1]} of the frame{centred},
  background brightening by {ramp:g} (RGB) from the first frame to the last (the world's arrow of time);
  prompt `a {{colour}} {{shape}} moving {{direction}}` (empty prompt {args.p_uncond:.0%} of the time, for
  classifier-free guidance).
- **Training** (this run): {start}{state['step']} steps x {args.batch} videos, AdamW lr {args.lr:g} (warm-up
  {args.warmup}, cosine to 10%), EMA {args.ema}, dropout off, seed {args.seed}, {args.threads} CPU thread(s),
  {high:.0%} of each batch at timesteps {high_from}-999;
  wall time {state['elapsed'] / 60:.1f} min; final loss (mean of the last 100 steps) {final:.4f}.
  The exported weights are the EMA weights.{probe_line}
- **Retrain**: `bash scripts/train_demo_model_v2.sh` runs the whole recipe, each stage a
  `scripts/train_demo_model.py` run (deterministic, resumable from its checkpoint folder;
  `--export-only` re-exports the latest checkpoint). The script's header says what each stage is for.
- **Use**: `scalecrafter-video demo`; any prompt outside the grammar is refused with a message.
{('- **Note**: ' + args.card_note + chr(10)) if args.card_note else ''}{metrics}
"""


def export(args, state, tokenizer):
    unet = build_unet(seed=args.seed)
    text = build_text_encoder(len(tokenizer), seed=args.seed)
    unet.load_state_dict(state["ema_unet"])
    text.load_state_dict(state["ema_text"])
    out = save_demo_model(args.out, unet, text, tokenizer, build_scheduler(),
                          defaults={"guidance_scale": args.default_guidance})
    (out / "README.md").write_text(model_card(args, state))
    last = [l for _, l in state["loss_log"][-100:]]
    summary = {
        "steps": state["step"],
        "batch": args.batch,
        "seed": args.seed,
        "threads": args.threads,
        "elapsed_s": round(state["elapsed"], 1),
        "final_loss_last100": round(float(np.mean(last)), 5) if last else None,
        "loss_every_10": [[s, round(l, 5)] for s, l in state["loss_log"] if s % 10 == 0],
        "word_gaps": state.get("probes", []),
        "args": state.get("args", vars(args)),
    }
    (out / "training_log.json").write_text(json.dumps(summary, indent=1) + "\n")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"exported step {state['step']} to {out} ({size / 1e6:.1f} MB)")


def init_weights(unet, text, folder: Path) -> None:
    """Load an exported demo model's UNet and text encoder weights (a warm start)."""
    from safetensors.torch import load_file

    for model, sub in ((unet, "unet"), (text, "text_encoder")):
        if model is None:
            continue
        files = sorted((folder / sub).glob("*.safetensors"))
        if not files:
            sys.exit(f"error: --init-from {folder}: no {sub}/*.safetensors; pass an exported demo model folder")
        missing, unexpected = model.load_state_dict(load_file(files[0]), strict=False)
        if unexpected:
            sys.exit(f"error: --init-from {folder}: {sub} has weights this network lacks: {unexpected[:3]}")
        if missing:
            print(f"--init-from: {len(missing)} {sub} tensors are new and keep their initialisation")


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tokenizer = build_tokenizer()
    ckpt_dir = Path(args.ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = ckpt_dir / "last.pt"

    unet = build_unet(seed=args.seed)
    text = build_text_encoder(len(tokenizer), seed=args.seed + 1)
    # UNet3D's temporal convs hard-code dropout 0.1; a 1.7M-parameter model trained for an hour
    # under-fits, so regularising it only slows it down (and the masks cost 7% of a step).
    for m in unet.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    if args.text_encoder == "frozen":
        text.requires_grad_(False)
        text.eval()
    params = list(unet.parameters()) + [p for p in text.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    state = {"step": 0, "elapsed": 0.0, "loss_log": []}
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        unet.load_state_dict(ck["unet"])
        text.load_state_dict(ck["text"])
        if not args.export_only:  # exporting needs only the weights
            opt.load_state_dict(ck["opt"])
        state = ck
        print(f"resumed from {ckpt_path} at step {ck['step']}")
    else:
        if args.init_from:
            # a frozen encoder keeps its own initialisation; only a trained one continues from the folder's
            keep_text = args.text_encoder == "train" or args.init_text
            init_weights(unet, text if keep_text else None, Path(args.init_from))
            print(f"initialised from {args.init_from}")
        state["ema_unet"] = {k: v.detach().clone() for k, v in unet.state_dict().items()}
        state["ema_text"] = {k: v.detach().clone() for k, v in text.state_dict().items()}
    if args.export_only:
        if not ckpt_path.exists():
            sys.exit(f"error: no checkpoint at {ckpt_path}")
        export(args, state, tokenizer)
        return 0

    sched = build_scheduler()
    alphas_cumprod = sched.alphas_cumprod
    unet.train()
    text.train(args.text_encoder == "train")
    ema_pairs = [(state["ema_unet"], unet), (state["ema_text"], text)]

    def save():
        payload = dict(state, unet=unet.state_dict(), text=text.state_dict(), opt=opt.state_dict(),
                       args=vars(args))
        atomic_save(payload, ckpt_path)

    if args.probe_every:
        probe = make_probe(tokenizer, args.world)
        probe_unet = build_unet(seed=args.seed).eval()
        probe_text = build_text_encoder(len(tokenizer), seed=args.seed).eval()
    bar = tqdm(total=args.steps, initial=state["step"], desc="train", unit="step", dynamic_ncols=True)
    smooth = None
    t_last = time.time()
    end = min(args.steps, args.stop_at or args.steps)
    while state["step"] < end:
        step = state["step"]
        x0, ids, noise, t, dropout_seed = make_batch(step, args, tokenizer)
        torch.manual_seed(dropout_seed)  # dropout inside the networks
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        a = alphas_cumprod[t].view(-1, 1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        cond = text(ids)[0]
        pred = unet(xt, t, encoder_hidden_states=cond).sample
        target = a.sqrt() * noise - (1 - a).sqrt() * x0  # v = sqrt(a) eps - sqrt(1 - a) x0
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for ema, model in ema_pairs:
                for k, v in model.state_dict().items():
                    if v.dtype.is_floating_point:
                        ema[k].lerp_(v, 1 - decay)
                    else:
                        ema[k].copy_(v)
        now = time.time()
        state["elapsed"] += now - t_last
        t_last = now
        state["step"] = step + 1
        state["loss_log"].append((step, loss.item()))
        smooth = loss.item() if smooth is None else 0.98 * smooth + 0.02 * loss.item()
        bar.update(1)
        bar.set_postfix(loss=f"{smooth:.4f}", lr=f"{lr_at(step, args):.1e}", min=f"{state['elapsed'] / 60:.1f}")
        if args.probe_every and (state["step"] % args.probe_every == 0 or state["step"] == end):
            probe_unet.load_state_dict(state["ema_unet"])
            probe_text.load_state_dict(state["ema_text"])
            gaps = text_gaps(probe_unet, probe_text, probe, alphas_cumprod)
            state.setdefault("probes", []).append([state["step"], gaps])
            tqdm.write(f"step {state['step']}: word gaps {gaps}")
            t_last = time.time()  # probing is not training time
        if state["step"] % args.save_every == 0 or state["step"] == end:
            save()
            t_last = time.time()  # checkpoint writing is not training time
    bar.close()
    print(f"trained {state['step']} steps in {state['elapsed'] / 60:.1f} min; loss (last 100) "
          f"{np.mean([l for _, l in state['loss_log'][-100:]]):.4f}")
    export(args, state, tokenizer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
