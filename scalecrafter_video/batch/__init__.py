"""Batch rendering: prompt files -> plan -> items rendered into one folder with a manifest.

- :mod:`.prompts`: reading prompt files (text or JSON lines);
- :mod:`.plan`: one item per (prompt, method, seed), names, shards, configuration hashes;
- :mod:`.manifest`: the job's state on disk (manifest, lock, what is finished, temporaries);
- :mod:`.runner`: :class:`BatchJob` and :func:`run_batch` (resume, torchrun sharding, failures).
"""

from .manifest import item_done, merge_manifests, read_manifest
from .plan import FORMATS, Item, config_hash, item_path, plan_items, shard
from .prompts import PromptEntry, read_prompts
from .runner import BatchJob, check_job, run_batch

__all__ = ["FORMATS", "BatchJob", "Item", "PromptEntry", "check_job", "config_hash", "item_done", "item_path",
           "merge_manifests", "plan_items", "read_manifest", "read_prompts", "run_batch", "shard"]
