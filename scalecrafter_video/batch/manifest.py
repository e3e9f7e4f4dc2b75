"""The state of a batch job on disk: the manifest (one JSON line per finished item, per-rank shards),
what counts as finished, the job lock, the out-dir probe and the sweep of a killed job's temporaries."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .. import atomic
from ..errors import ScaleCrafterError

__all__ = ["FAILURES", "LOCK", "MANIFEST", "append_line", "check_out_dir", "item_done", "lock_out_dir",
           "merge_manifests", "read_manifest", "remove_output", "stale_temporaries", "sweep_temporaries"]

MANIFEST = "manifest.jsonl"
FAILURES = "failures.jsonl"
LOCK = "render.lock"

def _manifest_files(out_dir: Path) -> list[Path]:
    shards = sorted(out_dir.glob("manifest.rank*.jsonl"), key=lambda p: p.name)
    main = out_dir / MANIFEST
    return ([main] if main.is_file() else []) + shards


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a kill: its item is simply redone
        if isinstance(row, dict) and isinstance(row.get("path"), str):
            rows.append(row)
    return rows


def read_manifest(out_dir) -> dict[str, dict]:
    """``path -> entry`` from ``manifest.jsonl`` and any rank shards (later lines win)."""
    out: dict[str, dict] = {}
    for f in _manifest_files(Path(out_dir)):
        for row in _read_jsonl(f):
            out[row["path"]] = row
    return out


def append_line(path: Path, entry: dict) -> None:
    """Append one JSON line; when the write or the fsync fails (a full disk), the file is cut back to
    its previous length so that no torn line stays for the next append to be glued onto."""
    data = (json.dumps(entry, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass  # the reader drops a torn line; the next run rewrites the manifest clean
            raise
    finally:
        os.close(fd)


def merge_manifests(out_dir: Path, order: list[str] | None = None) -> int:
    """Fold rank shards into ``manifest.jsonl`` (one line per path, in plan order, then by name)."""
    entries = read_manifest(out_dir)
    rank = {p: i for i, p in enumerate(order or [])}
    rows = sorted(entries.values(), key=lambda r: (rank.get(r["path"], len(rank)), r["path"]))
    atomic.write_text_atomic(out_dir / MANIFEST, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    for f in out_dir.glob("manifest.rank*.jsonl"):
        f.unlink(missing_ok=True)
    return len(rows)



def _npz_frame_count(path: Path) -> int:
    """First dimension of the ``frames`` array of an npz, read from the array header only (the zip's
    central directory sits at the end of the file, so a truncated file fails here)."""
    import zipfile

    with zipfile.ZipFile(path) as zf, zf.open("frames.npy") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(fh)
    return int(shape[0]) if shape else 0


def _frame_count(p: Path) -> int:
    """Frames of a finished output: frame files of a png folder, the npz header, or a full decode of
    a video (:func:`~scalecrafter_video.video_io.read_video`). Raises when the output cannot be read."""
    if p.is_dir():
        return sum(1 for f in p.glob("frame_*.png") if f.is_file() and f.stat().st_size > 0)
    if p.suffix == ".npz":
        return _npz_frame_count(p)
    from ..video_io import read_video

    return int(read_video(p).shape[0])


def item_done(out_dir: Path, rel: str, entry: dict | None) -> bool:
    """Finished = a manifest entry and its output on disk, still complete: a png folder with the
    recorded number of ``frame_*.png`` files, an npz whose ``frames`` array has the recorded length,
    a video that decodes to the recorded frame count (any decode error: not done). An entry without a
    frame count (not written by this tool) only needs a non-empty file."""
    if entry is None:
        return False
    p = out_dir / rel
    try:
        expected = entry.get("frames")
        if isinstance(expected, bool) or not isinstance(expected, int):
            return p.is_file() and p.stat().st_size > 0
        if Path(rel).suffix:  # mp4 / npz (and gif / webp): a non-empty regular file
            if not p.is_file() or p.stat().st_size == 0:
                return False
        elif not p.is_dir():  # png: a folder of frames
            return False
        return _frame_count(p) == expected
    except Exception:  # noqa: BLE001 - truncated, corrupt, unreadable: redo it
        return False


def stale_temporaries(out_dir: Path) -> list[Path]:
    """Entries of ``out_dir`` named like our temporaries (:func:`~scalecrafter_video.atomic.temporary_pattern`,
    and the out-dir probe ``.scalecrafter-probe.XXXXXXXX.tmp``); folders only when they hold nothing but
    ``frame_NNNNN.png`` files (a frame folder being written or swapped out), never symbolic links."""
    from ..export import is_own_output

    ours = atomic.temporary_pattern()
    return [p for p in out_dir.iterdir() if ours.fullmatch(p.name) and not p.is_symlink()
            and (not p.is_dir() or is_own_output(p))]


def sweep_temporaries(out_dir: Path) -> None:
    for stale in stale_temporaries(out_dir):
        try:
            if stale.is_dir():
                shutil.rmtree(stale)
            else:
                stale.unlink(missing_ok=True)
        except OSError:
            pass  # best effort: a leftover we cannot remove does not stop the job


def remove_output(path: Path) -> None:
    """Remove an output this run has just written (a file, or a png folder)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        pass



def lock_out_dir(out_dir: Path) -> int:
    import fcntl

    try:
        fd = os.open(out_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ScaleCrafterError(f"cannot create {out_dir / LOCK}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ScaleCrafterError(f"another render job is writing to {out_dir} ({out_dir / LOCK} is locked)") from None
    return fd



def check_out_dir(out_dir: Path) -> None:
    """Refuse an ``--out-dir`` that is a file, lies under a file, or cannot be written (permissions, a
    read-only file system): tried with a probe file in the folder, or in its nearest existing parent."""
    import tempfile

    if not str(out_dir).strip():
        raise ScaleCrafterError("--out-dir must name a folder")
    ancestor = out_dir
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if os.path.islink(ancestor) and not ancestor.exists():
        raise ScaleCrafterError(f"--out-dir {out_dir} cannot be created: {ancestor} is a broken symbolic link")
    if not ancestor.is_dir():
        if ancestor == out_dir:
            raise ScaleCrafterError(f"--out-dir {out_dir} is a file, not a folder")
        raise ScaleCrafterError(f"--out-dir {out_dir} cannot be created: {ancestor} is a file")
    where = "" if ancestor == out_dir else f" ({ancestor} is where it would be created)"
    try:  # a real write: mode bits, ACLs, read-only mounts and root all give the true answer
        fd, probe = tempfile.mkstemp(prefix=".scalecrafter-probe.", suffix=".tmp", dir=ancestor)
    except OSError as exc:
        raise ScaleCrafterError(f"--out-dir {out_dir} is not writable{where}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass

