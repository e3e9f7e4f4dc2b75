"""``scalecrafter-video ui``: the web app on a local model (default: the embedded demo model)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ScaleCrafterError


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
    from .app import Studio, import_gradio, load_model, serve

    if not 0 < args.port < 65536:
        raise ScaleCrafterError(f"--port must be in 1..65535, got {args.port}")
    import_gradio()  # before the model loads: a missing extra is reported at once
    if args.model is None and any(v is not None for v in (args.model_config, args.clip, args.motion_adapter)):
        raise ScaleCrafterError("--model-config, --clip and --motion-adapter need --model")
    from ..export import check_output_path

    check_output_path(Path(args.out_dir) / "probe.mp4", what="--out-dir")  # writable, not under a file
    pipe, name = load_model(args.model, device=args.device, dtype=args.dtype, model_config=args.model_config,
                            clip=args.clip, motion_adapter=args.motion_adapter)
    studio = Studio(pipe, name, args.out_dir, demo=args.model is None)
    serve(studio, args.host, args.port, block=True, quiet=True,
          announce=f"scalecrafter-video ui: {name} (native {pipe.train_size[0]}x{pipe.train_size[1]}), "
                   f"outputs in {args.out_dir}")
    return 0
