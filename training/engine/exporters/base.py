"""Exporter registry, the ``Artifact`` record and the atomic-output helpers every exporter uses."""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.engine.errors import ExportError

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Files that make up a tokenizer + chat template in a Hugging Face folder (copied as they are).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)


@dataclass(frozen=True)
class Artifact:
    """One exported artifact: a folder (adapter, merged model) or a file (GGUF), with its checksum."""

    kind: str
    path: str
    size_bytes: int
    sha256: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        """Inverse of ``to_dict``."""
        return cls(
            kind=str(data["kind"]),
            path=str(data["path"]),
            size_bytes=int(data["size_bytes"]),
            sha256=str(data["sha256"]),
            metadata=dict(data.get("metadata") or {}),
        )


# An exporter builds its output inside ``staging`` (a fresh folder) and returns (relative path of the artifact inside
# staging, metadata). ``export_artifact`` then moves staging into place atomically.
Exporter = Callable[..., "tuple[str, dict[str, Any]]"]


@dataclass(frozen=True)
class _Registered:
    func: Exporter
    preflight: Callable[..., None] | None


_EXPORTERS: dict[str, _Registered] = {}


def register(name: str, *, preflight: Callable[..., None] | None = None) -> Callable[[Exporter], Exporter]:
    """Register an exporter under ``name``; ``preflight`` checks inputs and tools before anything is written."""

    def deco(func: Exporter) -> Exporter:
        _EXPORTERS[name] = _Registered(func, preflight)
        return func

    return deco


def list_exporters() -> list[str]:
    """Names accepted by ``export_artifact``."""
    _load_builtin()
    return sorted(_EXPORTERS)


def _load_builtin() -> None:
    # Importing the modules registers their exporters; kept lazy so ``import training.engine`` stays light.
    from . import gguf, safetensors  # noqa: F401


def _lookup(name: str) -> _Registered:
    _load_builtin()
    if name in _EXPORTERS:
        return _EXPORTERS[name]
    if name.startswith("gguf"):
        from .gguf import SUPPORTED_QUANTIZATIONS, unsupported_quantization_message

        quant = name.split("-", 1)[1] if "-" in name else ""
        raise ExportError(unsupported_quantization_message(quant or "(none)", SUPPORTED_QUANTIZATIONS))
    raise ExportError(f"Unknown export format {name!r}; available: {', '.join(sorted(_EXPORTERS))}.")


def export_artifact(name: str, *, model_dir: str, base_model_path: str, out_dir: str, **options: Any) -> Artifact:
    """Export ``model_dir`` (a PEFT adapter or a full model) as ``name`` into ``out_dir/<name>``, atomically."""
    entry = _lookup(name)
    src = Path(model_dir)
    if not src.is_dir():
        raise ExportError(f"Model folder {model_dir} does not exist.")
    if not (src / "config.json").exists() and not is_adapter_dir(src):
        raise ExportError(f"{model_dir} is neither a PEFT adapter (no {ADAPTER_CONFIG}) nor a model (no config.json).")
    subdir = str(options.pop("subdir", name))
    try:
        inspect.signature(entry.func).bind(model_dir=str(src), base_model_path=base_model_path, staging="", **options)
    except TypeError as exc:
        raise ExportError(f"Bad options for the {name} export: {exc}") from exc
    if entry.preflight is not None:
        entry.preflight(model_dir=str(src), base_model_path=base_model_path, **options)
    if not subdir or "/" in subdir or subdir.startswith("."):
        raise ExportError(f"Invalid output folder name {subdir!r}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with staging_dir(out, name) as staging:
        try:
            rel, metadata = entry.func(
                model_dir=str(src), base_model_path=base_model_path, staging=str(staging), **options
            )
        except ExportError:
            raise
        except Exception as exc:  # anything else (load/convert failure) becomes a user-facing export error
            logger.exception("%s export of %s failed", name, model_dir)
            raise ExportError(f"The {name} export of {model_dir} failed: {type(exc).__name__}: {exc}") from exc
        final_dir = out / subdir
        publish(staging, final_dir)
    artifact_path = final_dir / rel if rel else final_dir
    if artifact_path.is_file():
        size, digest = artifact_path.stat().st_size, sha256_file(artifact_path)
        metadata.setdefault("folder", str(final_dir))
    else:
        size, digest, files = dir_digest(artifact_path)
        metadata.setdefault("files", files)
    logger.info("exported %s to %s (%d bytes)", name, artifact_path, size)
    return Artifact(kind=name, path=str(artifact_path), size_bytes=size, sha256=digest, metadata=metadata)


@contextlib.contextmanager
def staging_dir(out: Path, name: str) -> Iterator[Path]:
    """A fresh hidden folder inside ``out``; removed on failure (and after a successful publish)."""
    path = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=out))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def publish(staging: Path, final_dir: Path) -> None:
    """Move ``staging`` to ``final_dir``, replacing an older export of the same name (rename, never copy)."""
    old: Path | None = None
    if final_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".old-{final_dir.name}-", dir=final_dir.parent))
        os.replace(final_dir, old / final_dir.name)
    os.replace(staging, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def is_adapter_dir(path: str | Path) -> bool:
    """True when ``path`` holds a PEFT adapter (``adapter_config.json``)."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dir_digest(path: Path) -> tuple[int, str, dict[str, str]]:
    """(total size, SHA-256 over the sorted ``<sha256>  <relative path>`` lines, per-file hashes) of a folder."""
    files: dict[str, str] = {}
    size = 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        files[rel] = sha256_file(file)
        size += file.stat().st_size
    manifest = "".join(f"{digest}  {rel}\n" for rel, digest in files.items())
    return size, hashlib.sha256(manifest.encode()).hexdigest(), files


def copy_tokenizer_files(sources: list[str | Path], dest: str | Path) -> list[str]:
    """Copy tokenizer + chat-template files from the first source folder that has a tokenizer; return names copied."""
    for src in sources:
        src = Path(src)
        if not ((src / "tokenizer.json").exists() or (src / "tokenizer_config.json").exists()):
            continue
        copied = []
        for name in TOKENIZER_FILES:
            if (src / name).is_file():
                shutil.copy2(src / name, Path(dest) / name)
                copied.append(name)
        return copied
    return []


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON object from ``path`` (ExportError when it is unreadable)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ExportError(f"Cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ExportError(f"{path} does not hold a JSON object.")
    return data
