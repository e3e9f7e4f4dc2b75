#!/usr/bin/env bash
# FVD run recipe: render N videos per method for a prompt list, score each method against a
# reference folder with `scalecrafter-video fvd`, and write one report (JSON + markdown).
#
#   scripts/fvd_run.sh PROMPTS MODEL REFERENCE RUN_DIR [extra render options...]
#
#   PROMPTS    prompt file for `scalecrafter-video render` (txt or jsonl)
#   MODEL      local model folder (or .ckpt with --model-config in the extra options)
#   REFERENCE  folder of reference videos (the real set)
#   RUN_DIR    outputs: RUN_DIR/<method>/ (videos + manifest.jsonl), RUN_DIR/fvd_<method>.json,
#              RUN_DIR/report.json, RUN_DIR/report.md
#
# Environment:
#   METHODS="scalecrafter direct"   methods to compare (one render + one fvd each)
#   NUM_PER_PROMPT=1                videos per prompt (seeds 0..K-1); N = prompts x K per method
#   NPROC=1                         processes per node: >1 renders under torchrun (one GPU per rank)
#   TORCHRUN_ARGS=""                e.g. "--nnodes 2 --node_rank 0 --rdzv_endpoint host:29500" (multi-node)
#   FVD_ARGS="--num-frames 16"      options for `scalecrafter-video fvd` (--max-videos, --i3d-weights, ...)
#   PYTHON=python
#
# Re-running the same command resumes: finished videos are skipped (see `render --help`). The
# script exits non-zero when an item failed to render or a score could not be computed, after
# writing the report for everything that did work.
set -uo pipefail

if [ $# -lt 4 ]; then
  sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
PROMPTS=$1 MODEL=$2 REFERENCE=$3 RUN_DIR=$4
shift 4
METHODS=${METHODS:-"scalecrafter direct"}
NUM_PER_PROMPT=${NUM_PER_PROMPT:-1}
NPROC=${NPROC:-1}
TORCHRUN_ARGS=${TORCHRUN_ARGS:-}
FVD_ARGS=${FVD_ARGS:-"--num-frames 16"}
PYTHON=${PYTHON:-python}

for f in "$PROMPTS" "$MODEL" "$REFERENCE"; do
  [ -e "$f" ] || { echo "error: $f does not exist" >&2; exit 2; }
done
mkdir -p "$RUN_DIR"
status=0
started=$(date +%s)

for method in $METHODS; do
  out="$RUN_DIR/$method"
  if [ "$NPROC" -gt 1 ] || [ -n "$TORCHRUN_ARGS" ]; then
    # shellcheck disable=SC2086
    launch=("$PYTHON" -m torch.distributed.run --nproc_per_node "$NPROC" $TORCHRUN_ARGS -m scalecrafter_video)
  else
    launch=("$PYTHON" -m scalecrafter_video)
  fi
  echo "== render $method -> $out"
  "${launch[@]}" render --prompts "$PROMPTS" --model "$MODEL" --out-dir "$out" --method "$method" \
    --num-per-prompt "$NUM_PER_PROMPT" "$@"
  rc=$?
  if [ $rc -eq 2 ]; then echo "error: render $method refused (see above)" >&2; exit 2; fi
  [ $rc -ne 0 ] && status=1   # some items failed; score what was rendered
  echo "== fvd $method vs $REFERENCE"
  # shellcheck disable=SC2086
  if ! "$PYTHON" -m scalecrafter_video fvd "$REFERENCE" "$out" $FVD_ARGS --json "$RUN_DIR/fvd_$method.json"; then
    echo "error: fvd for $method failed" >&2
    rm -f "$RUN_DIR/fvd_$method.json"
    status=1
  fi
done

"$PYTHON" - "$RUN_DIR" "$REFERENCE" "$MODEL" "$PROMPTS" "$(( $(date +%s) - started ))" $METHODS <<'EOF'
import json, sys
from pathlib import Path

run_dir, reference, model, prompts, seconds, *methods = sys.argv[1:]
run_dir = Path(run_dir)
rows = []
for m in methods:
    manifest = run_dir / m / "manifest.jsonl"
    items = [json.loads(l) for l in manifest.read_text().splitlines()] if manifest.is_file() else []
    failures = run_dir / m / "failures.jsonl"
    failed = len(failures.read_text().splitlines()) if failures.is_file() else 0
    fvd_file = run_dir / f"fvd_{m}.json"
    fvd = json.loads(fvd_file.read_text()) if fvd_file.is_file() else {}
    proto = fvd.get("protocol", {})
    rows.append({
        "method": m, "videos": len(items), "failed": failed,
        "render_seconds": round(sum(i.get("seconds", 0) for i in items), 1),
        "size": sorted({f"{i['width']}x{i['height']}x{i['frames']}" for i in items}),
        "config_hash": sorted({i["config_hash"] for i in items}),
        "fvd": fvd.get("fvd"), "kvd": fvd.get("kvd"), "num_real": fvd.get("num_real"),
        "num_fake": fvd.get("num_fake"), "num_frames": fvd.get("num_frames"),
        "reference_weights": proto.get("reference_weights"), "fvd_json": str(fvd_file) if fvd else None,
    })
report = {"model": model, "prompts": prompts, "reference": reference, "wall_seconds": int(seconds), "methods": rows}
(run_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
fmt = lambda v, p: "n/a" if v is None else f"{v:.{p}f}"
lines = [
    "# FVD run", "",
    f"model `{model}`, prompts `{prompts}`, reference `{reference}`, wall time {int(seconds)} s", "",
    "| method | videos | failed | size (WxHxF) | FVD | KVD | N real / fake | T | reference I3D weights |",
    "|---|---|---|---|---|---|---|---|---|",
]
for r in rows:
    lines.append(f"| {r['method']} | {r['videos']} | {r['failed']} | {', '.join(r['size'])} | {fmt(r['fvd'], 2)} | "
                 f"{fmt(r['kvd'], 4)} | {r['num_real']} / {r['num_fake']} | {r['num_frames']} | {r['reference_weights']} |")
(run_dir / "report.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
print(f"report: {run_dir / 'report.json'}, {run_dir / 'report.md'}")
EOF
[ $? -ne 0 ] && status=1
exit $status
