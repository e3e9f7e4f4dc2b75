"""Prompt files of a batch job: plain text (one prompt a line) or JSON lines with per-prompt settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ScaleCrafterError

__all__ = ["ENTRY_KEYS", "PromptEntry", "read_prompts"]

ENTRY_KEYS = {"prompt", "seed", "seeds", "height", "width", "frames", "negative_prompt"}



@dataclass(frozen=True)
class PromptEntry:
    """One prompt line: ``line`` is 1-based in the prompt file; ``None`` fields take the CLI's values."""

    line: int
    prompt: str
    seeds: tuple[int, ...] | None = None
    height: int | None = None
    width: int | None = None
    frames: int | None = None
    negative_prompt: str | None = None


def _positive_int(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{key!r} must be a positive integer, got {value!r}")
    return value


def _seed(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"seeds must be non-negative integers, got {value!r}")
    return value


def _parse_json_entry(obj, line: int) -> PromptEntry:
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - ENTRY_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} (valid: {', '.join(sorted(ENTRY_KEYS))})")
    prompt = obj.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("'prompt' must be a non-empty string")
    if "seed" in obj and "seeds" in obj:
        raise ValueError("give 'seed' or 'seeds', not both")
    seeds = None
    if "seed" in obj:
        seeds = (_seed(obj["seed"]),)
    elif "seeds" in obj:
        if not isinstance(obj["seeds"], list) or not obj["seeds"]:
            raise ValueError("'seeds' must be a non-empty list of integers")
        seeds = tuple(_seed(s) for s in obj["seeds"])
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"'seeds' has duplicates: {list(seeds)}")
    sizes = {k: _positive_int(obj[k], k) for k in ("height", "width", "frames") if obj.get(k) is not None}
    negative = obj.get("negative_prompt")
    if negative is not None and not isinstance(negative, str):
        raise ValueError("'negative_prompt' must be a string")
    return PromptEntry(line, prompt.strip(), seeds, negative_prompt=negative, **sizes)


def read_prompts(path) -> list[PromptEntry]:
    """Read a prompt file: plain text (one prompt per line; blank lines and ``#`` comments skipped) or,
    for ``.jsonl``/``.ndjson`` files, one JSON object per line with ``prompt`` and optional ``seed`` or
    ``seeds``, ``height``, ``width``, ``frames``, ``negative_prompt``.

    Every bad line is reported, with its line number, in one :class:`ScaleCrafterError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ScaleCrafterError(f"prompt file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ScaleCrafterError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    is_jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    entries, problems = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not is_jsonl:
            entries.append(PromptEntry(number, line))
            continue
        try:
            entries.append(_parse_json_entry(json.loads(line), number))
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: invalid JSON ({exc.msg} at column {exc.colno})")
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ScaleCrafterError(f"{path}: {len(problems)} bad line(s): {shown}")
    if not entries:
        raise ScaleCrafterError(f"{path}: no prompts")
    return entries

