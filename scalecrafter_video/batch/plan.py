"""The plan of a batch job: one item per (prompt entry, method, seed), deterministic names, rank shards."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from .prompts import PromptEntry

__all__ = ["FORMATS", "Item", "config_hash", "item_path", "plan_items", "shard", "slug"]

FORMATS = ("mp4", "png", "npz")

@dataclass
class Item:
    """One output to render. ``name`` is the deterministic file name (without the format suffix)."""

    entry: int  # 0-based index of the prompt entry
    line: int
    prompt: str
    seed: int
    method: str
    height: int | None
    width: int | None
    frames: int | None
    negative_prompt: str | None
    name: str = ""
    config_hash: str = ""
    error: str | None = None  # a planning error (e.g. a size the model cannot take): recorded as failed
    extra: dict = field(default_factory=dict)


def slug(text: str, length: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (s[:length].rstrip("-")) or "prompt"


def plan_items(entries: list[PromptEntry], methods: list[str], seeds: list[int], defaults: dict) -> list[Item]:
    """Every (prompt entry, method, seed) in a fixed order; sizes fall back to ``defaults``
    (keys ``height``, ``width``, ``frames``, ``negative_prompt``)."""
    items = []
    for k, e in enumerate(entries):
        for method in methods:
            for seed in e.seeds or seeds:
                items.append(Item(
                    entry=k, line=e.line, prompt=e.prompt, seed=seed, method=method,
                    height=e.height or defaults.get("height"), width=e.width or defaults.get("width"),
                    frames=e.frames or defaults.get("frames"),
                    negative_prompt=e.negative_prompt if e.negative_prompt is not None else defaults.get("negative_prompt"),
                    name=f"{k:05d}_{slug(e.prompt)}_{method}_s{seed}",
                ))
    return items


def shard(items: list, rank: int, world: int) -> list:
    """Items ``rank, rank + world, ...``: over all ranks, every item exactly once."""
    return items[rank::world]


def config_hash(config_dict: dict, **fields) -> str:
    """Stable sha256 (16 hex digits) of the resolved config plus whatever else changes the pixels."""
    blob = json.dumps({"config": config_dict, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]



def item_path(item: Item, fmt: str) -> str:
    return item.name if fmt == "png" else f"{item.name}.{fmt}"

