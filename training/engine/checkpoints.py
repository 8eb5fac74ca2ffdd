"""Atomic, resumable checkpoints: ``output_dir/checkpoint-<step>/``.

A checkpoint is written into ``checkpoint-<step>.tmp``, every file is fsynced, the completion marker
(``checkpoint-complete.json``) is written last, then the folder is renamed into place. A folder without the marker
(a crash mid-write, a half-deleted folder) is never resumed from and is cleaned up by the next run.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

PREFIX = "checkpoint-"
MARKER = "checkpoint-complete.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def is_complete(path: str | os.PathLike[str]) -> bool:
    """True when the checkpoint folder carries its completion marker."""
    return (Path(path) / MARKER).is_file()


def list_checkpoints(output_dir: str | os.PathLike[str], *, complete_only: bool = True) -> list[tuple[int, str]]:
    """(step, path) of the checkpoints in ``output_dir``, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir() and (not complete_only or is_complete(child)):
            found.append((int(match.group(1)), str(child)))
    return sorted(found)


def latest_complete_checkpoint(output_dir: str | os.PathLike[str]) -> str | None:
    """Path of the newest complete checkpoint, or None (incomplete folders are ignored)."""
    found = list_checkpoints(output_dir)
    return found[-1][1] if found else None


def checkpoint_step(path: str | os.PathLike[str]) -> int:
    """The step number in a checkpoint folder's name."""
    match = _NAME.match(Path(path).name)
    if not match:
        raise ValueError(f"{path} is not a checkpoint folder")
    return int(match.group(1))


def write_checkpoint(output_dir: str | os.PathLike[str], step: int, writer: Callable[[str], None]) -> str:
    """Run ``writer(tmp_dir)`` then publish ``checkpoint-<step>`` atomically; return its path."""
    root = Path(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step}"
    tmp = root / f"{PREFIX}{step}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    writer(str(tmp))
    _fsync_tree(tmp)
    marker = tmp / MARKER
    with open(marker, "w", encoding="utf-8") as fh:
        json.dump({"step": step, "time": time.time()}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    if final.exists():  # the same step saved again (e.g. a resumed run that stopped where it resumed)
        old = root / f"{PREFIX}{step}.old"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    return str(final)


def rotate_checkpoints(output_dir: str | os.PathLike[str], keep: int) -> list[str]:
    """Delete all but the newest ``keep`` complete checkpoints (never the newest); return the deleted paths."""
    keep = max(1, keep)
    complete = list_checkpoints(output_dir)
    deleted = []
    for _step, path in complete[:-keep]:
        # Remove the marker first: a crash mid-delete leaves an incomplete folder, never a damaged "complete" one.
        try:
            os.remove(os.path.join(path, MARKER))
        except FileNotFoundError:
            pass
        shutil.rmtree(path, ignore_errors=True)
        deleted.append(path)
    return deleted


def clean_incomplete(output_dir: str | os.PathLike[str]) -> list[str]:
    """Remove leftovers of interrupted writes (``*.tmp``/``*.old`` and checkpoint folders without a marker)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    removed = []
    for child in root.iterdir():
        name = child.name
        if not name.startswith(PREFIX) or not child.is_dir():
            continue
        if name.endswith((".tmp", ".old")) or (_NAME.match(name) and not is_complete(child)):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(str(child))
    if removed:
        logger.info("removed incomplete checkpoint folders: %s", ", ".join(removed))
    return removed
