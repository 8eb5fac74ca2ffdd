"""Artifacts through the storage API, and this host's cache of them.

Checkpoints, final models and Hub snapshots are folders; each is stored as one reproducible tar object
(training.engine.artifacts.pack_dir) through Django's default storage (the filesystem, or S3/MinIO with
STORAGE_BACKEND=s3) under a key the server makes, `<prefix>/<sha256>.tar`. The database records the key, the hash and
the size, never a host path. A process that needs the folder asks for it with `use(key, sha256)`: it is fetched into
this host's ArtifactCache (ARTIFACT_CACHE_DIR, ARTIFACT_CACHE_MAX_GB), checked against its hash, and stays there
(LRU) for the next use, so any host can be replaced at any time.

Storing uploads first and returns the key; callers record it afterwards, so a half-uploaded object is never named in
the database.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

from training.engine.artifacts import ArtifactCache, pack_dir

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredArtifact:
    key: str
    sha256: str
    size: int


def store_folder(folder: str | Path, prefix: str) -> StoredArtifact:
    """Pack `folder` and upload it under `<prefix>/<sha256>.tar` (skipped when that object already exists: same
    bytes, same key); returns what to record."""
    packed = pack_dir(folder, Path(settings.TRAINING_RUNS_DIR) / ".packing")
    try:
        stored = store_archive(packed.path, packed.sha256, packed.size, prefix)
        logger.info("stored %s (%d bytes) as %s", folder, packed.size, stored.key)
        return stored
    finally:
        packed.path.unlink(missing_ok=True)


def store_archive(path: str | Path, sha256: str, size: int, prefix: str) -> StoredArtifact:
    """Upload a tar made by pack_dir (here, or by a remote run and hashed as it arrived) under
    `<prefix>/<sha256>.tar`, unless that object is already there (same bytes, same key)."""
    key = f"{prefix.strip('/')}/{sha256}.tar"
    if not default_storage.exists(key):
        with open(path, "rb") as fh:
            saved = default_storage.save(key, File(fh, name=Path(key).name))
        if saved != key:  # another process stored the same bytes meanwhile (the filesystem renames): keep one
            default_storage.delete(saved)
    return StoredArtifact(key, sha256, size)


def check_archive(path: str | Path) -> list[str]:
    """The member names of a tar upload, or ValueError when it is not a tar or a member would land outside its
    folder (absolute paths, `..`, links out, devices)."""
    names = []
    try:
        with tarfile.open(path, mode="r:") as tar, tempfile.TemporaryDirectory() as dest:
            for member in tar:
                tarfile.data_filter(member, dest)
                names.append(member.name)
    except (tarfile.TarError, OSError) as exc:
        raise ValueError(f"not a valid artifact archive: {exc}") from exc
    return names


@functools.cache
def _cache(root: str, max_bytes: int) -> ArtifactCache:
    return ArtifactCache(root, max_bytes)


def host_cache() -> ArtifactCache:
    """This process's handle on this host's artifact cache."""
    return _cache(str(settings.ARTIFACT_CACHE_DIR), int(settings.ARTIFACT_CACHE_MAX_BYTES))


@contextlib.contextmanager
def use(key: str, sha256: str, *, label: str = "") -> Iterator[Path]:
    """The artifact's folder on this host (fetched into the cache if needed), kept until the block ends."""
    if not key or not sha256:
        raise FileNotFoundError(f"{label or 'the artifact'} has no stored copy")
    with host_cache().use(sha256, lambda: default_storage.open(key, "rb"), label=label or key) as path:
        yield path


def presigned_download_url(key: str, filename: str, expire_s: int | None = None) -> str | None:
    """A short-lived URL the client downloads `key` from directly (S3/MinIO: a presigned GET naming `filename` as an
    attachment), or None where the storage has none (the filesystem: the web tier streams the file)."""
    if settings.STORAGE_BACKEND != "s3":
        return None
    safe = "".join(c if c.isalnum() or c in "-_. " else "_" for c in filename) or "download"
    return str(
        default_storage.url(
            key,
            parameters={"ResponseContentDisposition": f'attachment; filename="{safe}"'},
            expire=expire_s or int(settings.AWS_QUERYSTRING_EXPIRE),
        )
    )


def delete(key: str) -> None:
    """Remove a stored object (missing is fine)."""
    if key:
        try:
            default_storage.delete(key)
        except OSError as exc:
            logger.warning("could not delete %s: %s", key, exc)


def folders_under(prefix: str) -> list[str]:
    """The names of the folders directly under ``prefix`` in the store (none when it does not exist)."""
    try:
        folders, _files = default_storage.listdir(prefix.strip("/"))
    except (OSError, FileNotFoundError):
        return []
    return sorted(folders)


def delete_under(prefix: str) -> int:
    """Remove every stored object directly under ``prefix`` (a job's checkpoint folder, say): what was recorded and
    what a killed attempt uploaded but never got to record. Returns how many were removed."""
    prefix = prefix.strip("/")
    if not prefix.startswith("artifacts/"):  # only the server-made artifact keys, never a user's files
        raise ValueError(f"refusing to delete under {prefix!r}")
    try:
        _dirs, files = default_storage.listdir(prefix)
    except (OSError, FileNotFoundError):
        return 0
    for name in files:
        delete(f"{prefix}/{name}")
    return len(files)
