"""The artifact packer and the per-host artifact cache (training/engine/artifacts.py), with real processes."""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import tarfile
from pathlib import Path

import pytest

from training.engine.artifacts import ArtifactCache, ArtifactCorrupt, pack_dir

pytestmark = pytest.mark.fleet


def _folder(root: Path, seed: int = 0, mb: int = 2) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "adapter_config.json").write_text('{"r": 8}')
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "weights.bin").write_bytes(os.urandom(16) * (mb * 65536) if seed else bytes(mb << 20))
    return root


class _SlowFile(io.RawIOBase):
    """A stream that hands out small reads and records each open in `log` (one line per download)."""

    def __init__(self, path: Path, log: Path) -> None:
        self.fh = open(path, "rb")  # noqa: SIM115
        with open(log, "a") as out:
            out.write(f"{os.getpid()}\n")

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self.fh.read(64 << 10)

    def close(self) -> None:
        self.fh.close()
        super().close()


def _fetch_in_process(root: str, sha: str, archive: str, log: str, barrier: mp.Barrier, out: mp.Queue) -> None:
    cache = ArtifactCache(root, 1 << 30)
    barrier.wait()
    with cache.use(sha, lambda: _SlowFile(Path(archive), Path(log))) as path:
        files = {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    out.put(
        (
            os.getpid(),
            cache.downloads,
            {k: len(v) for k, v in files.items()},
            __import__("hashlib").sha256(b"".join(files[k] for k in sorted(files))).hexdigest(),
        )
    )


def test_pack_is_reproducible_and_hash_named(tmp_path: Path) -> None:
    src = _folder(tmp_path / "model", seed=1)
    a = pack_dir(src, tmp_path / "out")
    os.utime(src / "adapter_config.json", (1, 1))  # times and owners are not part of the object
    b = pack_dir(src, tmp_path / "out")
    assert a.sha256 == b.sha256 and a.size == b.size == a.path.stat().st_size
    (src / "adapter_config.json").write_text('{"r": 16}')
    assert pack_dir(src, tmp_path / "out").sha256 != a.sha256


def test_two_processes_fetch_once_and_get_identical_files(tmp_path: Path) -> None:
    packed = pack_dir(_folder(tmp_path / "model", seed=1, mb=8), tmp_path / "out")
    log = tmp_path / "downloads.log"
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(
            target=_fetch_in_process,
            args=(str(tmp_path / "cache"), packed.sha256, str(packed.path), str(log), barrier, out),
        )
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert len(log.read_text().split()) == 1, "both processes downloaded the object"
    assert sorted(r[1] for r in results) == [0, 1]
    assert results[0][2:] == results[1][2:]
    assert results[0][2] == {
        ".artifact-manifest.json": results[0][2][".artifact-manifest.json"],
        "adapter_config.json": 8,
        "sub/weights.bin": 8 << 20,
    }


def test_corrupted_cached_file_is_detected_and_fetched_again(tmp_path: Path) -> None:
    packed = pack_dir(_folder(tmp_path / "model", seed=1), tmp_path / "out")
    cache = ArtifactCache(tmp_path / "cache", 1 << 30)
    opens = []

    def opener() -> io.BufferedReader:
        opens.append(1)
        return open(packed.path, "rb")

    with cache.use(packed.sha256, opener) as path:
        original = (path / "sub" / "weights.bin").read_bytes()
    with cache.use(packed.sha256, opener):
        pass
    assert len(opens) == 1  # cached
    weights = path / "sub" / "weights.bin"
    with open(weights, "r+b") as fh:  # flip one byte, same size
        fh.seek(12345)
        byte = fh.read(1)
        fh.seek(12345)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with cache.use(packed.sha256, opener) as path:
        assert (path / "sub" / "weights.bin").read_bytes() == original
    assert len(opens) == 2
    # Another process (a fresh cache object) sees the repaired copy without downloading.
    with ArtifactCache(tmp_path / "cache", 1 << 30).use(packed.sha256, opener):
        pass
    assert len(opens) == 2


def test_a_download_that_does_not_match_its_hash_is_refused(tmp_path: Path) -> None:
    packed = pack_dir(_folder(tmp_path / "model", seed=1), tmp_path / "out")
    other = pack_dir(_folder(tmp_path / "other", seed=2), tmp_path / "out")
    cache = ArtifactCache(tmp_path / "cache", 1 << 30)
    with pytest.raises(ArtifactCorrupt, match="does not match its recorded hash"):
        with cache.use(packed.sha256, lambda: open(other.path, "rb")):
            pass
    assert list((tmp_path / "cache" / "objects").iterdir()) == []
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []


def test_lru_eviction_keeps_the_size_bound_and_never_evicts_an_entry_in_use(tmp_path: Path) -> None:
    packs = [pack_dir(_folder(tmp_path / f"m{i}", seed=i + 1, mb=2), tmp_path / "out") for i in range(3)]
    cache = ArtifactCache(tmp_path / "cache", 5 << 20)  # room for two 2 MB entries
    with cache.use(packs[0].sha256, lambda: open(packs[0].path, "rb")):
        with cache.use(packs[1].sha256, lambda: open(packs[1].path, "rb")):
            with cache.use(packs[2].sha256, lambda: open(packs[2].path, "rb")):
                # Over the bound, but all three are held: none may go.
                assert len(list(cache.objects.iterdir())) == 3
    with cache.use(packs[2].sha256, lambda: open(packs[2].path, "rb")):  # the most recent use
        pass
    assert cache.evict() == [packs[0].sha256]  # least recently used first
    assert cache.size_bytes() <= 5 << 20


def test_an_archive_escaping_its_folder_is_refused(tmp_path: Path) -> None:
    import hashlib

    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    sha = hashlib.sha256(bad.read_bytes()).hexdigest()
    cache = ArtifactCache(tmp_path / "cache", 1 << 30)
    with pytest.raises(tarfile.OutsideDestinationError):
        with cache.use(sha, lambda: open(bad, "rb")):
            pass
    assert not (tmp_path / "escaped.txt").exists()
