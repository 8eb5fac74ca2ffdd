"""Atomic, resumable checkpoints: ``output_dir/checkpoint-<step>/``.

A checkpoint is written into ``checkpoint-<step>.tmp``, every file is fsynced, the completion marker
(``checkpoint-complete.json``) is written last, then the folder is renamed into place. A folder without the marker
(a crash mid-write, a half-deleted folder) is never resumed from and is cleaned up by the next run. The marker lists
every file and its size, so a complete checkpoint that was damaged afterwards (a truncated or missing file) is told
apart by ``checkpoint_problem`` and the run resumes from the one before it.

A disk that fills up while a checkpoint is written raises ``DiskFull`` (a plain message, no path) after the partial
folder is removed, so its space is free again and the checkpoint before it stays the one to resume from.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import struct
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

from .errors import DiskFull

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


def begin_checkpoint(output_dir: str | os.PathLike[str], step: int, *, create: bool = True) -> Path:
    """The staging folder ``checkpoint-<step>.tmp`` (emptied and made when ``create``; in a sharded distributed save
    only rank 0 makes it, and every rank writes into it after a barrier)."""
    root = Path(output_dir)
    tmp = root / f"{PREFIX}{step}.tmp"
    if create:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    return tmp


def publish_checkpoint(output_dir: str | os.PathLike[str], step: int, tmp: Path) -> str:
    """Fsync a written staging folder, write its completion marker last and rename it to ``checkpoint-<step>``
    atomically; its path. A failure removes the partial folder (a full disk says so)."""
    root = Path(output_dir)
    final = root / f"{PREFIX}{step}"
    try:
        _fsync_tree(tmp)
        files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        with open(tmp / MARKER, "w", encoding="utf-8") as fh:
            json.dump({"step": step, "time": time.time(), "files": files}, fh)
            fh.flush()
            os.fsync(fh.fileno())
    except Exception as exc:
        _discard(tmp, root, step, exc)
        raise
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


def _discard(tmp: Path, root: Path, step: int, exc: BaseException) -> None:
    """Remove a partial checkpoint (of no use) and raise ``DiskFull`` when the disk filled up."""
    full = is_disk_full(exc, root)
    shutil.rmtree(tmp, ignore_errors=True)  # a partial checkpoint is of no use: give its space back
    if full:
        raise DiskFull(disk_full_message(f"saving the checkpoint of step {step}", root)) from exc


def write_checkpoint(output_dir: str | os.PathLike[str], step: int, writer: Callable[[str], None]) -> str:
    """Run ``writer(tmp_dir)`` then publish ``checkpoint-<step>`` atomically; return its path."""
    root = Path(output_dir)
    tmp = begin_checkpoint(root, step)
    try:
        writer(str(tmp))
    except Exception as exc:
        _discard(tmp, root, step, exc)
        raise
    return publish_checkpoint(root, step, tmp)


def rotate_checkpoints(output_dir: str | os.PathLike[str], keep: int) -> list[str]:
    """Delete all but the newest ``keep`` complete checkpoints (never the newest); return the deleted paths."""
    keep = max(1, keep)
    complete = list_checkpoints(output_dir)
    deleted = []
    for _step, path in complete[:-keep]:
        # Remove the marker first: a crash mid-delete leaves an incomplete folder, never a damaged "complete" one.
        remove_checkpoint(path)
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


# --- damaged checkpoints --------------------------------------------------------------------------------------------


def checkpoint_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a complete checkpoint folder would not load (a missing or truncated file, unreadable weights, state or
    JSON), or None when it looks whole. Cheap: sizes, safetensors headers, zip directories and CRCs; no tensor is
    deserialized."""
    root = Path(path)
    try:
        marker = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "its completion marker is missing or unreadable"
    listed = marker.get("files") if isinstance(marker, dict) else None
    for name, size in (listed or {}).items():  # markers written before the file list carry none
        file = root / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, {size} were written"
    for file in sorted(root.rglob("*")):
        if file.is_file() and file.name != MARKER:
            problem = _file_problem(file)
            if problem:
                return f"{file.relative_to(root)} {problem}"
    return None


def _file_problem(file: Path) -> str | None:
    suffix = file.suffix
    try:
        if suffix == ".safetensors":
            return _safetensors_problem(file)
        if suffix == ".json":
            json.loads(file.read_text(encoding="utf-8"))
        elif suffix in (".pt", ".pth", ".bin"):  # torch.save writes zip archives
            if not zipfile.is_zipfile(file):
                return "is not a readable torch file"
            with zipfile.ZipFile(file) as archive:
                if archive.testzip() is not None:
                    return "is damaged (CRC mismatch)"
    except (OSError, ValueError, zipfile.BadZipFile):
        return "is unreadable"
    return None


def _safetensors_problem(file: Path) -> str | None:
    size = file.stat().st_size
    with open(file, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return "is truncated"
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            return "is truncated"
        header = json.loads(fh.read(length))
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + length + end != size:
        return "is truncated" if 8 + length + end > size else "has trailing bytes"
    return None


def remove_checkpoint(path: str | os.PathLike[str]) -> None:
    """Delete a checkpoint folder, its marker first (a crash mid-delete leaves an incomplete folder)."""
    try:
        os.remove(os.path.join(path, MARKER))
    except FileNotFoundError:
        pass
    shutil.rmtree(path, ignore_errors=True)


# --- a full disk ----------------------------------------------------------------------------------------------------

_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_DISK_FULL_TEXTS = ("No space left on device", "os error 28", "Disk quota exceeded", "StorageFull")
# torch.save reports a full disk as an opaque "unexpected pos" error: a failed write with (almost) nothing left free
# is taken for a full disk too.
_NEARLY_FULL_BYTES = 4 * 1024 * 1024


def is_disk_full(exc: BaseException, path: str | os.PathLike[str]) -> bool:
    """True when ``exc`` (raised while writing under ``path``) comes from a full disk or an exhausted quota."""
    seen: BaseException | None = exc
    for _ in range(10):  # the exception, its cause or context, and theirs
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL_ERRNOS:
            return True
        if any(text in str(seen) for text in _DISK_FULL_TEXTS):
            return True
        seen = seen.__cause__ or seen.__context__
    try:
        return shutil.disk_usage(path).free < _NEARLY_FULL_BYTES
    except OSError:
        return False


def disk_full_message(doing: str, output_dir: str | os.PathLike[str]) -> str:
    """What a user reads when the disk filled up while ``doing``: how much is free, what a checkpoint needs and what
    is still there to resume from (no path: the message reaches people who do not know this machine)."""
    try:
        free = _human(shutil.disk_usage(output_dir).free)
    except OSError:
        free = "an unknown amount"
    message = f"No space left on the device while {doing}: {free} free on the run's disk"
    newest = latest_complete_checkpoint(output_dir)
    if newest is None:
        return message + ". Free some space, then start the run again."
    need = sum(p.stat().st_size for p in Path(newest).rglob("*") if p.is_file())
    return (
        f"{message}, a checkpoint needs about {_human(need)}. The checkpoint of step {checkpoint_step(newest)} "
        "is intact: free some space, then resume the run from it."
    )


def _human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover
