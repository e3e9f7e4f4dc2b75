"""``scalecrafter-video ui``: the web app on a local model (default: the embedded demo model)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ui",
        help="a local web app: Direct-Inf vs ScaleCrafter side by side in the browser (needs the [ui] extra)",
        description="Start a Gradio app on a local model (default: the embedded demo model). Every video is "
                    "written, with its sidecar JSON, under --out-dir, and nowhere else. Needs Gradio: "
                    'pip install -e ".[ui]".',
    )
    p.add_argument("--model", help="local diffusers folder, or an LVDM/VideoCrafter .ckpt (default: the embedded "
                                   "demo model, models/shapes-t2v)")
    p.add_argument("--model-config", help="YAML config of a .ckpt model (LVDM / VideoCrafter)")
    p.add_argument("--clip", help="local tokenizer / CLIP text-encoder folder (LVDM, VideoCrafter)")
    p.add_argument("--motion-adapter", help="AnimateDiff: a local MotionAdapter folder")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (the demo model runs on the CPU)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "float16", "bfloat16"])
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the app "
                        "and the files in --out-dir to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--out-dir", default="outputs/ui", help="where videos and sidecars are written (default outputs/ui)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..webapp.app import run_app

    run_app(model=args.model, model_config=args.model_config, clip=args.clip, motion_adapter=args.motion_adapter,
            device=args.device, dtype=args.dtype, host=args.host, port=args.port, out_dir=args.out_dir)
    return 0
