"""The stored files of a dataset version: saving checked files, local paths to read them, download and delete."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from finetune import artifacts
from finetune.exceptions import ServiceError

from .models import Dataset, DatasetFile
from .uploads import CheckedFile


def store_file(dataset: Dataset, c: CheckedFile, role: str) -> DatasetFile:
    """Save a checked file as one of the version's files (under a server-made storage key)."""
    df = DatasetFile(
        dataset=dataset,
        role=role,
        kind=c.kind,
        compressed=c.compressed,
        original_filename=c.original_filename[:255],
        size_bytes=c.size_bytes,
        sha256=c.sha256,
    )
    with open(c.path, "rb") as fh:
        df.file.save("upload", File(fh), save=False)  # the key comes from dataset_file_key
    df.save()
    return df


@contextlib.contextmanager
def local_paths(dataset: Dataset, roles: Sequence[str] | None = None) -> Iterator[list[str]]:
    """Local file paths of the dataset's files (downloaded to a temp dir when storage is remote)."""
    files = list(dataset.files.all())
    if roles:
        files = [f for f in files if f.role in roles]
    tmp: str | None = None
    paths: list[str] = []
    try:
        for f in files:
            try:
                paths.append(f.file.path)
                continue
            except NotImplementedError:
                pass
            tmp = tmp or tempfile.mkdtemp(prefix="finetune-ds-")
            target = Path(tmp) / f"{f.pk}-{Path(f.file.name).name}"
            with f.file.open("rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            paths.append(str(target))
        yield paths
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def direct_download_url(dataset: Dataset) -> str | None:
    """A short-lived presigned URL of the version's file on S3 (one file only; several are zipped by open_download),
    or None (the filesystem, or several files)."""
    files = list(dataset.files.all())
    if len(files) != 1:
        return None
    f = files[0]
    return artifacts.presigned_download_url(f.file.name, f.original_filename or Path(f.file.name).name)


def open_download(dataset: Dataset) -> tuple[Any, str]:
    """An open file object and the download name: the file itself, or a zip of several."""
    files = list(dataset.files.all())
    if not files:
        raise ServiceError("This version has no files yet.", status_code=409)
    if len(files) == 1:
        f = files[0]
        return f.file.open("rb"), f.original_filename or Path(f.file.name).name
    tmp = tempfile.TemporaryFile()
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            with f.file.open("rb") as src, zf.open(f"{f.role}-{f.original_filename or f.pk}", "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    tmp.seek(0)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset.name)[:80] or "dataset"
    return tmp, f"{safe}-v{dataset.version}.zip"


DELETE_ATTEMPTS = 3


def delete_dataset(dataset: Dataset) -> None:
    """Delete a version and its files from storage. A version that training jobs used is kept (409): the jobs, their
    models and their reproducibility record point at it.

    A validation, preprocessing or split task may add a file to the version while it is being deleted (the file
    rows are collected before the version's row goes): PostgreSQL then refuses the delete (a foreign key), and it
    is tried again with the new file included; after DELETE_ATTEMPTS such races it answers 409."""
    pk = dataset.pk
    for _attempt in range(DELETE_ATTEMPTS):
        row = Dataset.objects.filter(pk=pk).first()  # fresh each time: a failed commit left the instance pk-less
        if row is None:
            return
        keys = [f.file.name for f in DatasetFile.objects.filter(dataset_id=pk)]
        try:
            with transaction.atomic():
                row.delete()
                transaction.on_commit(lambda keys=keys: [default_storage.delete(k) for k in keys])
            return
        except ProtectedError as exc:
            users = sorted({f"{obj._meta.verbose_name} #{obj.pk}" for obj in exc.protected_objects})
            listed = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
            raise ServiceError(
                f"This dataset version is still used ({listed}); delete those first, or keep the version.",
                status_code=409,
            ) from None
        except IntegrityError:  # a task wrote a file to it meanwhile: collect again
            continue
    raise ServiceError(
        "This dataset version is being written to by a validation or preprocessing run; try again when it is done.",
        status_code=409,
    )
