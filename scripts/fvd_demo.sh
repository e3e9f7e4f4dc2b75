#!/usr/bin/env bash
# End-to-end FVD recipe on CPU: the embedded demo model against ground-truth moving-shape scenes.
#
#   scripts/fvd_demo.sh [RUN_DIR]          (default runs/fvd-demo)
#
# 1. writes N demo-grammar prompts ("a red circle moving left", ...) to RUN_DIR/prompts.txt;
# 2. renders the ground truth of each prompt (scalecrafter_video.demo.scenes, analytic scenes) at the
#    target size into RUN_DIR/reference/ (mp4);
# 3. runs scripts/fvd_run.sh: ScaleCrafter and Direct-Inf at 2x the native side, FVD each vs reference.
#
# Environment: N=6 prompts, SCALE=2 (target side / native side), FRAMES=9 (the least I3D takes),
# STEPS=10, MODEL (default models/shapes-t2v; when that folder is missing the tiny random test
# model of the test suite (tests/conftest.py) is used instead and the report says so: its FVD
# shows the plumbing only).
# The defaults take about 4 minutes on 2 CPU cores; FVD from 6 videos is only a smoke test (use
# hundreds to thousands of videos per side for numbers worth comparing).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${1:-runs/fvd-demo}
N=${N:-6} SCALE=${SCALE:-2} FRAMES=${FRAMES:-9} STEPS=${STEPS:-10}
MODEL=${MODEL:-models/shapes-t2v}
PYTHON=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$RUN_DIR"

if [ ! -f "$MODEL/model_index.json" ]; then
  echo "note: $MODEL not found; using the tiny random test model (tests/conftest.py) instead" >&2
  MODEL="$RUN_DIR/tiny-t2v"
  [ -f "$MODEL/model_index.json" ] || "$PYTHON" -c "
import sys; sys.path.insert(0, 'tests')
from pathlib import Path
from conftest import TinyModels
TinyModels(Path('$RUN_DIR') / '_tiny-parts').t2v_folder(Path('$MODEL'))"
  echo "tiny random test model (no demo model available)" > "$RUN_DIR/MODEL_NOTE.txt"
fi

# Prompts and their ground truth at the target size (read from the model's native size).
read -r HEIGHT WIDTH < <("$PYTHON" - "$MODEL" "$RUN_DIR" "$N" "$SCALE" "$FRAMES" <<'EOF'
import json, sys
from pathlib import Path

import numpy as np

from scalecrafter_video.demo import COLOURS, DIRECTIONS, SHAPES, render_scene, scene_from_prompt
from scalecrafter_video.demo.scenes import to_uint8
from scalecrafter_video.export import write_video

model, run_dir, n, scale, frames = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
unet = json.loads((Path(model) / "unet" / "config.json").read_text())
sample = unet["sample_size"]
sample = (sample, sample) if isinstance(sample, int) else tuple(sample)
vae_factor = 1
if (Path(model) / "vae" / "config.json").is_file():
    vae_factor = 2 ** (len(json.loads((Path(model) / "vae" / "config.json").read_text())["block_out_channels"]) - 1)
height, width = sample[0] * vae_factor * scale, sample[1] * vae_factor * scale
rng = np.random.default_rng(0)
prompts = []
for i in range(n):
    colour = list(COLOURS)[i % len(COLOURS)]
    shape = SHAPES[(i // len(COLOURS)) % len(SHAPES)]
    direction = list(DIRECTIONS)[(i * 3 + 1) % len(DIRECTIONS)]
    prompts.append(f"a {colour} {shape} moving {direction}")
(run_dir / "prompts.txt").write_text("\n".join(prompts) + "\n")
ref = run_dir / "reference"
ref.mkdir(exist_ok=True)
for i, prompt in enumerate(prompts):
    scene = scene_from_prompt(prompt, rng, frames=frames, aspect=width / height)
    # deterministic: a resumed run writes the same reference again over its own previous files
    write_video(to_uint8(render_scene(scene, height, width, frames)), ref / f"{i:05d}.mp4", fps=8, overwrite=True)
print(height, width)
EOF
)
echo "target ${WIDTH}x${HEIGHT}, $FRAMES frames, $N prompts; reference: $RUN_DIR/reference"

extra=(--height "$HEIGHT" --width "$WIDTH" --frames "$FRAMES" --device cpu)
extra+=(--steps "$STEPS")
FVD_ARGS="--num-frames $FRAMES --device cpu" scripts/fvd_run.sh "$RUN_DIR/prompts.txt" "$MODEL" \
  "$RUN_DIR/reference" "$RUN_DIR" "${extra[@]}"
