"""Dataset workflows: upload (checked, within quota, stored under server keys), re-validation, and reading a
version's report, statistics and preview.

The rest lives by concern: storage quota (``quotas``), stored files, download and delete (``files``), the processing
task (``processing``), lineage and new versions (``versions``); their public names are re-exported here, so
``datasets_app.services`` stays the app's one service interface for other apps."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction

from accounts import quotas
from accounts.models import User
from finetune.exceptions import ServiceError
from training.engine.data import DatasetFormat

from .base_models import check_base_model, chosen_tokenizer
from .files import delete_dataset, direct_download_url, local_paths, open_download, store_file
from .models import Dataset, DatasetFile
from .processing import enqueue_processing, process_dataset, read_limits
from .quotas import check_upload_size_early, storage_usage, storage_used
from .uploads import check_uploaded_file
from .versions import FILE_FIELDS, STEP_OPTIONS, owned_datasets, preprocess, split, versions, with_lineage_info

__all__ = [
    "FILE_FIELDS",
    "FORMATS",
    "STEP_OPTIONS",
    "check_upload_size_early",
    "create_dataset",
    "delete_dataset",
    "direct_download_url",
    "get_preview",
    "get_report",
    "get_statistics",
    "local_paths",
    "open_download",
    "owned_datasets",
    "parse_column_mapping",
    "parse_format",
    "preprocess",
    "process_dataset",
    "revalidate",
    "split",
    "storage_usage",
    "storage_used",
    "update_dataset",
    "versions",
    "with_lineage_info",
]

logger = logging.getLogger(__name__)

FORMATS = [f.value for f in DatasetFormat]


# --- input checks -----------------------------------------------------------------------------------------------
def parse_format(fmt: str | None) -> str:
    """The format the user chose ("" for auto-detection), or a 400 naming the known ones."""
    fmt = (fmt or "").strip()
    if fmt in ("", "auto"):
        return ""
    if fmt not in FORMATS:
        raise ServiceError(f"Unknown format '{fmt}'. Use one of: auto, {', '.join(FORMATS)}.", field="format")
    return fmt


def parse_column_mapping(raw: Any) -> dict[str, str] | None:
    """A column mapping given as a dict or a JSON string (None for none)."""
    if raw in (None, "", {}):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ServiceError(
                f"column_mapping is not valid JSON: {exc.msg} at column {exc.colno}.", field="column_mapping"
            ) from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ServiceError(
            'column_mapping must map field names to source columns, e.g. {"instruction": "question"}.',
            field="column_mapping",
        )
    return raw or None


def _default_name(filename: str) -> str:
    base = filename
    for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".csv", ".parquet"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    return (base.replace("_", " ").strip() or "dataset")[:200]


# --- upload -----------------------------------------------------------------------------------------------------
def create_dataset(
    *,
    owner: User,
    uploads: Sequence[Any],
    name: str | None = None,
    fmt: str | None = None,
    column_mapping: Any = None,
) -> Dataset:
    """Check and store uploaded files as a new dataset (version 1) and queue its processing."""
    if not uploads:
        raise ServiceError("Choose a file to upload (field `file`).", field="file")
    if len(uploads) > settings.DATASET_MAX_FILES:
        raise ServiceError(
            f"Too many files at once: {len(uploads)}; upload at most {settings.DATASET_MAX_FILES} per dataset.",
            field="file",
        )
    fmt = parse_format(fmt)
    mapping = parse_column_mapping(column_mapping)
    checked = [check_uploaded_file(u.temporary_file_path(), u.name) for u in uploads]
    total = sum(c.size_bytes for c in checked)
    stored: list[str] = []
    try:
        with transaction.atomic():
            # Row lock on the user: parallel uploads are counted one after the other against the quota.
            quotas.lock_user(owner.pk)
            quotas.check_storage(owner.quotas(), storage_used(owner), total)
            dataset = Dataset.objects.create(
                owner=owner,
                name=(name or "").strip()[:200] or _default_name(checked[0].original_filename),
                format_override=fmt,
                format=fmt,
                column_mapping=mapping,
                size_bytes=total,
                original_filename=checked[0].original_filename,
                operation={"type": "upload"},
            )
            for c in checked:
                stored.append(store_file(dataset, c, DatasetFile.Role.SOURCE).file.name)
            enqueue_processing(dataset)
    except Exception:
        for key in stored:
            with contextlib.suppress(Exception):
                default_storage.delete(key)
        raise
    logger.info("dataset %s uploaded by user %s (%s files, %s bytes)", dataset.pk, owner.pk, len(checked), total)
    return dataset


# --- re-validation and edits ------------------------------------------------------------------------------------
def revalidate(
    dataset: Dataset,
    *,
    base_model: Any = None,
    max_length: int | None = None,
    fmt: str | None = None,
    column_mapping: Any = None,
    mapping_given: bool = False,
) -> Dataset:
    """Run processing again, optionally with another base model's tokenizer (a catalogue id the owner may use), max
    length, format or column mapping."""
    if dataset.status == Dataset.Status.PROCESSING and dataset.progress < 1.0 and not dataset.files.exists():
        raise ServiceError("This version is still being built; wait for it to finish.", status_code=409)
    opts = dict(dataset.validation_settings or {})
    base_model_id = check_base_model(dataset.owner_id, base_model)
    if base_model_id is not None:
        opts["base_model"] = base_model_id
    elif not isinstance(opts.get("base_model"), int):
        opts.pop("base_model", None)  # a free string stored before choices were checked: back to the default
    if max_length is not None:
        if not 16 <= int(max_length) <= 131072:
            raise ServiceError("max_length must be between 16 and 131072.", field="max_length")
        opts["max_length"] = int(max_length)
    with transaction.atomic():
        row = Dataset.objects.select_for_update().get(pk=dataset.pk)
        if fmt is not None:
            row.format_override = parse_format(fmt)
        if mapping_given:
            row.column_mapping = parse_column_mapping(column_mapping)
        row.validation_settings = opts
        row.status, row.progress, row.run_token = Dataset.Status.UPLOADED, 0.0, uuid.uuid4()
        row.save()
        enqueue_processing(row)
    return row


def update_dataset(
    dataset: Dataset,
    *,
    name: str | None = None,
    fmt: str | None = None,
    column_mapping: Any = None,
    mapping_given: bool = False,
) -> Dataset:
    """Rename; a new format or column mapping re-runs validation."""
    if name is not None:
        if not name.strip():
            raise ServiceError("The name cannot be empty.", field="name")
        dataset.name = name.strip()[:200]
        dataset.save(update_fields=["name", "updated"])
    if fmt is not None or mapping_given:
        return revalidate(dataset, fmt=fmt, column_mapping=column_mapping, mapping_given=mapping_given)
    return dataset


# --- reading ----------------------------------------------------------------------------------------------------
def _require_processed(dataset: Dataset) -> None:
    if dataset.report is None:
        if dataset.status in (Dataset.Status.UPLOADED, Dataset.Status.PROCESSING):
            raise ServiceError("The dataset is still being processed.", status_code=409)
        raise ServiceError(dataset.error or "The dataset has no report.", status_code=409)


def get_report(dataset: Dataset) -> dict[str, Any]:
    """The stored validation report (409 while processing)."""
    _require_processed(dataset)
    return dict(dataset.report or {})


def get_statistics(dataset: Dataset) -> dict[str, Any]:
    """The report's statistics (computed from the files for a report that lacks them)."""
    _require_processed(dataset)
    stats = (dataset.report or {}).get("statistics")
    if stats is None:
        from datasets_app.validation import statistics

        with local_paths(dataset) as paths, read_limits():
            stats = statistics(paths, fmt=dataset.format or None, column_mapping=dataset.column_mapping)
    return stats


def get_preview(dataset: Dataset, *, offset: int, limit: int, base_model: Any = None) -> dict[str, Any]:
    """Rows rendered as the model sees them (chat template applied, trained spans marked), with the tokenizer of
    ``base_model`` (a catalogue id the owner may use) or else of the one chosen for validation."""
    if offset < 0 or not 1 <= limit <= 100:
        raise ServiceError("offset must be >= 0 and limit between 1 and 100.")
    base_model_id = check_base_model(dataset.owner_id, base_model)
    if dataset.status != Dataset.Status.READY and not dataset.format:
        _require_processed(dataset)
    from datasets_app.validation import preview

    opts = dataset.validation_settings or {}
    chosen = base_model_id if base_model_id is not None else opts.get("base_model")
    with local_paths(dataset) as paths, read_limits(), chosen_tokenizer(dataset.owner_id, chosen) as tokenizer:
        return preview(
            paths,
            fmt=dataset.format or dataset.format_override or None,
            column_mapping=dataset.column_mapping,
            tokenizer_path=tokenizer.folder,
            offset=offset,
            limit=limit,
            max_length=opts.get("max_length"),
        )
