"""Artifacts as single objects, and the size-bounded local cache every host keeps of them (plain Python).

An artifact is a folder (a checkpoint, a final model, a Hub snapshot) stored as one uncompressed tar object under a
server-made key, named by the SHA-256 of the tar (`pack_dir`). Any host that needs one fetches it by key and hash
into its `ArtifactCache`:

- the download is hashed as it streams and refused when the hash differs (`ArtifactCorrupt`), so a truncated or
  tampered object is never used;
- it is unpacked with tarfile's "data" filter (no absolute paths, no `..`, no links out) into a temporary folder
  that is renamed into place with a manifest of every file's size and SHA-256;
- several processes fetching the same object at once take a per-object file lock: one downloads, the others wait and
  use its result;
- every use re-checks the files against the manifest (a corrupted cached file is detected and fetched again);
- entries are evicted least-recently-used once the cache passes its size bound, never while a process holds one
  (`with cache.use(...)` keeps a shared lock on it).

The web app opens objects through Django's storage API, a remote run through signed URLs: both hand the cache an
`opener` returning a binary stream, so this module needs neither.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
MANIFEST = ".artifact-manifest.json"
Opener = Callable[[], IO[bytes]]


class ArtifactCorrupt(Exception):
    """The object's bytes do not match the hash the platform recorded for it."""


@dataclass(frozen=True)
class Packed:
    path: Path  # the tar file
    sha256: str
    size: int


# One fixed modification time for every member (2020-01-01): the same folder always packs to the same bytes, and
# unpacked files carry a date every tool accepts (zip, for one, refuses dates before 1980).
FIXED_MTIME = 1577836800


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Reproducible members: no owner, one fixed time."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = FIXED_MTIME
    return info


def pack_dir(folder: str | os.PathLike[str], into: str | os.PathLike[str]) -> Packed:
    """Pack `folder`'s contents (sorted, reproducible, uncompressed: weights do not compress) into a tar file
    in the folder `into`, hashing it; the caller uploads it and removes it."""
    src = Path(folder)
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder")
    Path(into).mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="artifact-", suffix=".tar", dir=into)
    digest = hashlib.sha256()
    size = 0

    class _Hashing:
        def write(self, data: bytes) -> int:
            nonlocal size
            digest.update(data)
            size += len(data)
            return _write_all(fd, data)

    try:
        # dereference: a Hub snapshot's files are links into its blob store; the object holds their contents.
        with tarfile.open(
            fileobj=_Hashing(),
            mode="w|",
            format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
            dereference=True,
        ) as tar:
            for path in sorted(src.rglob("*")):
                if not (path.is_file() or path.is_dir()) or (path.is_dir() and path.is_symlink()):
                    continue
                tar.add(path, arcname=str(path.relative_to(src)), recursive=False, filter=_tar_filter)
    finally:
        os.close(fd)
    return Packed(Path(name), digest.hexdigest(), size)


def _write_all(fd: int, data: bytes) -> int:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    return len(data)


HOST_PATH_KEYS = ("model_dir", "output_dir", "checkpoint")  # result fields that name folders of the run's host


def without_host_paths(result: dict[str, object]) -> dict[str, object]:
    """A run's result as the platform records it: no field naming a folder of the host that ran it (those folders
    are gone once the run ends; the artifacts are in the store)."""
    out = {k: v for k, v in result.items() if k not in HOST_PATH_KEYS}
    out["artifacts"] = [{k: v for k, v in a.items() if k != "path"} for a in result.get("artifacts") or []]  # type: ignore[union-attr]
    return out


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def unpack(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Unpack a tar made by pack_dir into `dest` (created), refusing members that would land outside it."""
    Path(dest).mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, mode="r:") as tar:
        tar.extractall(dest, filter="data")


def _manifest(folder: Path) -> dict[str, list[int | str]]:
    return {
        str(p.relative_to(folder)): [p.stat().st_size, file_sha256(p)]
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


class ArtifactCache:
    """A folder of unpacked artifacts, keyed by content hash, bounded to `max_bytes` (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str], max_bytes: int) -> None:
        self.root = Path(root)
        self.max_bytes = max(0, int(max_bytes))
        self.objects = self.root / "objects"
        self.locks = self.root / "locks"
        self.tmp = self.root / "tmp"
        for path in (self.objects, self.locks, self.tmp):
            path.mkdir(parents=True, exist_ok=True)
        self.downloads = 0  # objects this instance downloaded (tests and logs)
        self._verified: dict[str, tuple[tuple[str, int, int], ...]] = {}  # hash -> files' (name, size, mtime) seen

    # --- public ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def use(self, sha256: str, opener: Opener, *, label: str = "") -> Iterator[Path]:
        """The unpacked folder of the object with this hash, fetched with `opener` if not cached (or corrupted);
        it stays in the cache (not evicted) until the block ends."""
        _check_hash(sha256)
        with self._lock(sha256, shared=True):
            path = self.objects / sha256
            if self._intact(path):
                self._touch(path)
                yield path
                return
        # Not there (or damaged): fetch under the exclusive lock, then use it under a shared one (another process's
        # eviction may remove it in between: then fetch again).
        for _attempt in range(3):
            with self._lock(sha256, shared=False):
                if not self._intact(path):
                    self._fetch(sha256, opener, label)
            with self._lock(sha256, shared=True):
                if not self._intact(path):
                    continue
                self._touch(path)
                self.evict()  # makes room for what was just added; never this entry: it is held
                yield path
                return
        raise ArtifactCorrupt(f"{label or sha256[:12]} kept disappearing from the cache at {self.root}")

    def evict(self) -> list[str]:
        """Remove least-recently-used entries nobody holds until the cache fits its bound; return their hashes."""
        entries = []
        total = 0
        for path in self.objects.iterdir():
            size = _entry_size(path)
            total += size
            entries.append((_last_used(path), size, path))
        removed = []
        for _used, size, path in sorted(entries):
            if total <= self.max_bytes:
                break
            lock_path = self.locks / f"{path.name}.lock"
            with open(lock_path, "a+") as fh:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # in use by some process: keep it
                try:
                    doomed = self.tmp / f"evict-{uuid.uuid4().hex}"
                    os.replace(path, doomed)
                    shutil.rmtree(doomed, ignore_errors=True)
                    total -= size
                    removed.append(path.name)
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        if removed:
            logger.info("artifact cache %s: evicted %d object(s)", self.root, len(removed))
        return removed

    def size_bytes(self) -> int:
        return sum(_entry_size(p) for p in self.objects.iterdir())

    # --- internals ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self, sha256: str, *, shared: bool) -> Iterator[None]:
        with open(self.locks / f"{sha256}.lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _intact(self, path: Path) -> bool:
        """True when every file of the entry matches its manifest: sizes always, hashes once per process and again
        whenever a file's size or modification time changed since."""
        try:
            manifest = json.loads((path / MANIFEST).read_text())
            files = manifest.get("files", {})
            seen = tuple((name, (st := (path / name).stat()).st_size, st.st_mtime_ns) for name in files)
        except (OSError, ValueError):
            return False
        if any(size != files[name][0] for name, size, _ in seen):
            logger.warning("artifact cache: a file of %s has the wrong size; fetching it again", path.name)
            return False
        if self._verified.get(path.name) == seen:
            return True
        for name, (_size, sha) in files.items():
            if file_sha256(path / name) != sha:
                logger.warning("artifact cache: %s/%s does not match its hash; fetching it again", path.name, name)
                return False
        self._verified[path.name] = seen
        return True

    def _fetch(self, sha256: str, opener: Opener, label: str) -> None:
        work = Path(tempfile.mkdtemp(prefix=f"fetch-{sha256[:12]}-", dir=self.tmp))
        try:
            archive = work / "object.tar"
            digest = hashlib.sha256()
            started = time.monotonic()
            with opener() as src, open(archive, "wb") as out:
                while chunk := src.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise ArtifactCorrupt(
                    f"{label or 'the artifact'} does not match its recorded hash "
                    f"(got {digest.hexdigest()[:12]}, expected {sha256[:12]})"
                )
            folder = work / "unpacked"
            unpack(archive, folder)
            archive.unlink()
            files = _manifest(folder)
            (folder / MANIFEST).write_text(json.dumps({"sha256": sha256, "label": label, "files": files}))
            target = self.objects / sha256
            if target.exists():  # a damaged earlier copy
                doomed = self.tmp / f"damaged-{uuid.uuid4().hex}"
                os.replace(target, doomed)
                shutil.rmtree(doomed, ignore_errors=True)
            os.replace(folder, target)
            self._verified[sha256] = tuple(
                (name, (st := (target / name).stat()).st_size, st.st_mtime_ns) for name in files
            )
            self._touch(target)
            self.downloads += 1
            logger.info(
                "artifact cache %s: fetched %s (%s) in %.1f s",
                self.root,
                label or sha256[:12],
                _human(_entry_size(target)),
                time.monotonic() - started,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _touch(path: Path) -> None:
        with contextlib.suppress(OSError):
            os.utime(path / MANIFEST)


def _check_hash(sha256: str) -> None:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")


def _entry_size(path: Path) -> int:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        return sum(int(size) for size, _sha in manifest.get("files", {}).values())
    except (OSError, ValueError):
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _last_used(path: Path) -> float:
    try:
        return (path / MANIFEST).stat().st_mtime
    except OSError:
        return 0.0


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"
