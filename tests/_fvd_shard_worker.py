"""Run under torchrun (gloo, CPU) by test_fvd_sharding.py: sharded features and a sharded CLI run."""

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

torch.set_num_threads(1)

from scalecrafter_video.cli import main  # noqa: E402
from scalecrafter_video.metrics import load_i3d  # noqa: E402
from scalecrafter_video.metrics.features import embed_videos  # noqa: E402

real, fake, weights, out = sys.argv[1:5]
dist.init_process_group("gloo")
rank = dist.get_rank()
fs = embed_videos(real, load_i3d(weights=weights), num_frames=9, batch_size=2)
np.save(Path(out) / f"features_rank{rank}.npy", fs.features)
fk = embed_videos(fake, load_i3d(weights=weights), num_frames=9, batch_size=2, skip_bad=True)
np.save(Path(out) / f"fake_features_rank{rank}.npy", fk.features)
Path(out, f"meta_rank{rank}.json").write_text(json.dumps({"shard_size": fs.shard_size, "names": fs.names}))
code = main(["fvd", real, fake, "--num-frames", "9", "--batch-size", "2", "--i3d-weights", weights, "--skip-bad",
             "--no-cache", "--no-progress", "--no-optimize", "--json", str(Path(out) / f"cli_rank{rank}.json")])
dist.destroy_process_group()
sys.exit(code)
