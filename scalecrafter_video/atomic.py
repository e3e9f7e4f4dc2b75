"""The one way this package puts a file or folder in place.

Everything is written under a hidden temporary name in the target's own folder,
``.{name}.XXXXXXXX.tmp{suffix}`` (``suffix`` keeps a format-carrying extension such as ``.npz``),
flushed, and renamed onto the target when complete. A crash leaves at most that temporary, which
the next run for the same target recognises by its name and sweeps (``export.sweep_stale_temporaries``,
the batch runner's out-dir sweep). A target that is an existing folder (a previous png frame folder)
is swapped when the caller allows it (``swap_folders``, for outputs it has checked are its own): renamed
aside to ``.{name}.XXXXXXXX.old`` until the new one is in place, then removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "temporary_pattern", "umask", "write_json_atomic", "write_text_atomic"]


_RANDOM = r"[A-Za-z0-9_]{8}"  # tempfile's random part


def temporary_pattern(name: str | None = None) -> re.Pattern:
    """The names :func:`atomic_path` gives temporaries of ``name`` (any name when None), and the
    ``.old`` name of a folder being swapped out, for sweeping what a killed run left behind.

    Also matched, so that leftovers of earlier versions are swept too: ``.{stem}.XXXXXXXX.tmp{suffix}``
    and ``.{name}.{pid}.tmp[.npz]``.
    """
    if name is None:
        return re.compile(rf"\..+\.(?:{_RANDOM}\.(?:tmp(?:\.[A-Za-z0-9]+)?|old)|\d+\.tmp(?:\.npz)?)")
    path = Path(name)
    stem, suffix = re.escape(path.stem), re.escape(path.suffix)
    return re.compile(rf"\.(?:{stem}\.{_RANDOM}\.tmp{suffix}|{re.escape(path.name)}\.{_RANDOM}\.(?:tmp(?:{suffix})?|old))")


def umask() -> int:
    """The process umask (read without changing it for longer than two calls)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, *, suffix: str = "", folder: bool = False, fsync: bool = True,
                swap_folders: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without an error, put it in place.

    ``folder=True`` makes the temporary an (empty) folder to fill, else an empty file. Permissions
    follow the umask as for a plain ``open``. On any error the temporary is removed and the target
    is untouched. An existing folder at ``path`` (or a file, when a folder is written) is replaced
    only with ``swap_folders=True``, for callers that checked it is theirs; otherwise the rename
    fails as ``os.replace`` does.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if folder:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if fsync and not folder:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, (0o777 if folder else 0o666) & ~umask())
        if swap_folders:
            _swap_into_place(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def _swap_into_place(new: Path, path: Path) -> None:
    """``os.replace``, except where a folder replaces or is replaced: swap the old one out first
    (one rename each way; it comes back if the second rename fails)."""
    target_is_folder = os.path.isdir(path) and not os.path.islink(path)
    if not os.path.lexists(path) or not (target_is_folder or new.is_dir()):
        os.replace(new, path)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    old.rmdir()
    os.replace(path, old)
    try:
        os.replace(new, path)
    except OSError:
        os.replace(old, path)
        raise
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_json_atomic(path, data, *, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON (keys in insertion order, a final newline) atomically."""
    return write_text_atomic(path, json.dumps(data, indent=indent) + "\n")
