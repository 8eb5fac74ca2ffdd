"""Versions of a dataset: lineage queries (one SQL query for a whole list), and new versions made by preprocessing
steps or a train/validation split of a validated version (built by the processing task)."""

from __future__ import annotations

import functools
from typing import Any

from django.db import connection, transaction
from django.db.models import JSONField, Max, QuerySet
from django.db.models.expressions import RawSQL

from accounts import quotas
from accounts.models import User
from finetune.exceptions import ServiceError

from .models import Dataset, DatasetFile
from .processing import enqueue_processing
from .quotas import storage_used
from .validation.steps import STEP_OPTIONS

FILE_FIELDS = ("id", "role", "original_filename", "kind", "compressed", "size_bytes", "sha256")


# --- lineage queries --------------------------------------------------------------------------------------------
def with_lineage_info(qs: QuerySet[Dataset]) -> QuerySet[Dataset]:
    """Annotate each version with its lineage's first version's id (`root_pk`), newest version number
    (`newest_version`) and its files as one JSON array (`files_json`, DatasetSerializer's `files`), all computed by
    PostgreSQL in the list's one query: a list then costs the same queries whatever its length, with no model
    instance per file. The subqueries are fixed SQL (`_lineage_sql`): building them with the ORM cost more CPU per
    request than the whole rest of the dataset list."""
    sql = _lineage_sql()
    return qs.annotate(
        root_pk=RawSQL(sql["root_pk"], ()),
        newest_version=RawSQL(sql["newest_version"], ()),
        files_json=RawSQL(sql["files_json"], (), output_field=JSONField()),
    )


@functools.cache
def _lineage_sql() -> dict[str, str]:
    """The correlated subqueries of with_lineage_info. They refer to the outer row by its table name, which is the
    alias Django gives a query's base table."""
    qn = connection.ops.quote_name
    d, f = qn(Dataset._meta.db_table), qn(DatasetFile._meta.db_table)
    fields = ", ".join(f"'{name}', f.{qn(name)}" for name in FILE_FIELDS)
    return {
        "root_pk": f"SELECT v.id FROM {d} v WHERE v.lineage = {d}.lineage ORDER BY v.version LIMIT 1",
        "newest_version": f"SELECT MAX(v.version) FROM {d} v WHERE v.lineage = {d}.lineage",
        # As text: JSONField decodes it (psycopg would decode a json value itself, which JSONField refuses).
        "files_json": f"SELECT COALESCE(json_agg(json_build_object({fields}) ORDER BY f.id), '[]'::json)::text "
        f"FROM {f} f WHERE f.dataset_id = {d}.id",
    }


def owned_datasets(owner: User) -> QuerySet[Dataset]:
    """The owner's datasets (every version), newest first, ready to serialize."""
    return with_lineage_info(Dataset.objects.filter(owner=owner))


def versions(dataset: Dataset) -> list[Dataset]:
    """Every version of the dataset's lineage, oldest first."""
    return list(
        with_lineage_info(Dataset.objects.filter(owner_id=dataset.owner_id, lineage=dataset.lineage)).order_by(
            "version"
        )
    )


# --- new versions -----------------------------------------------------------------------------------------------
def preprocess(dataset: Dataset, *, steps: list[dict[str, Any]], name: str | None = None) -> Dataset:
    """Queue a new version made by applying `steps` (the original is kept)."""
    if not isinstance(steps, list) or not steps:
        raise ServiceError("Give at least one preprocessing step.", field="steps")
    _check_steps(steps)
    return _new_version(dataset, name=name, operation={"type": "preprocess", "steps": steps})


def split(dataset: Dataset, *, validation_ratio: float, seed: int) -> Dataset:
    """Queue a new version with train and validation files."""
    if not 0.0 < validation_ratio < 1.0 or validation_ratio > 0.5:
        raise ServiceError("validation_ratio must be > 0 and <= 0.5.", field="validation_ratio")
    if dataset.files.filter(role=DatasetFile.Role.VALIDATION).exists():
        raise ServiceError("This version is already split; split its parent instead.", status_code=409)
    return _new_version(
        dataset, name=None, operation={"type": "split", "validation_ratio": validation_ratio, "seed": seed}
    )


def _check_steps(steps: list[Any]) -> None:
    for i, step in enumerate(steps, 1):
        op = step.get("op") if isinstance(step, dict) else None
        if op not in STEP_OPTIONS:
            raise ServiceError(f"Step {i}: unknown op {op!r}; use one of {', '.join(STEP_OPTIONS)}.", field="steps")
        extra = set(step) - {"op"} - STEP_OPTIONS[op]
        if extra:
            raise ServiceError(f"Step {i} ({op}): unknown option(s) {', '.join(sorted(extra))}.", field="steps")
        if op == "dedupe" and step.get("mode", "exact") not in ("exact", "normalized"):
            raise ServiceError(f"Step {i} (dedupe): mode must be 'exact' or 'normalized'.", field="steps")
        if op == "chunk":
            mt, ov = step.get("max_tokens", 512), step.get("overlap", 0)
            if not isinstance(mt, int) or not isinstance(ov, int) or mt < 16 or not 0 <= ov < mt:
                raise ServiceError(
                    f"Step {i} (chunk): need 16 <= max_tokens and 0 <= overlap < max_tokens.", field="steps"
                )


def _require_ready(dataset: Dataset) -> None:
    # An "invalid" version with some good rows may still be cleaned: preprocessing drops the rows that fail.
    usable = dataset.status == Dataset.Status.INVALID and int((dataset.report or {}).get("rows_valid") or 0) > 0
    if dataset.status != Dataset.Status.READY and not usable:
        raise ServiceError("Only a validated dataset with usable rows can be preprocessed or split.", status_code=409)


def _new_version(dataset: Dataset, *, name: str | None, operation: dict[str, Any]) -> Dataset:
    """Create the next version of the lineage (within the owner's storage quota) and queue its building."""
    _require_ready(dataset)
    with transaction.atomic():
        quotas.lock_user(dataset.owner_id)
        quotas.check_storage(dataset.owner.quotas(), storage_used(dataset.owner), dataset.size_bytes)
        top = Dataset.objects.filter(lineage=dataset.lineage).aggregate(v=Max("version"))["v"] or 0
        child = Dataset.objects.create(
            owner_id=dataset.owner_id,
            name=(name or dataset.name).strip()[:200],
            lineage=dataset.lineage,
            version=top + 1,
            parent=dataset,
            operation=operation,
            status=Dataset.Status.UPLOADED,
            validation_settings=dataset.validation_settings,
            original_filename=dataset.original_filename,
        )
        enqueue_processing(child)
    return child
