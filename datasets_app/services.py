"""Dataset workflows: upload (checked, within quota, stored under server keys), processing into a validation
report, preview, statistics, preprocessing and splits into new versions, download, delete."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import JSONField, Max, QuerySet, Sum
from django.db.models.expressions import RawSQL

from accounts import realtime as events
from accounts.models import User
from finetune import artifacts
from finetune.exceptions import ServiceError
from training.engine.errors import EngineError

from .models import Dataset, DatasetFile
from .uploads import CheckedFile, check_uploaded_file, human_bytes

logger = logging.getLogger(__name__)

FORMATS = ["alpaca", "sharegpt", "messages", "prompt_completion", "text", "preference", "hh_rlhf",
           "sharegpt_preference"]


# --- quotas ---------------------------------------------------------------------------------------------------
def storage_used(user: User) -> int:
    """Bytes of storage the user's datasets take."""
    return int(DatasetFile.objects.filter(dataset__owner=user).aggregate(n=Sum("size_bytes"))["n"] or 0)


def _check_quota(user: User, incoming: int) -> None:
    quota = int(user.quotas()["storage_bytes"])
    used = storage_used(user)
    if used + incoming > quota:
        raise ServiceError(
            f"This upload ({human_bytes(incoming)}) would take you past your storage quota: "
            f"{human_bytes(used)} of {human_bytes(quota)} used. Delete datasets you no longer need or ask an "
            "operator for more space.",
            status_code=413,
        )


def check_upload_size_early(user: User, content_length: int) -> None:
    """Refuse before reading the body when the declared size is over the cap or the quota."""
    if content_length > settings.DATASET_MAX_UPLOAD_BYTES + 64 * 1024:
        from .uploads import too_large_message

        raise ServiceError(too_large_message(content_length), status_code=413)
    quota = int(user.quotas()["storage_bytes"])
    used = storage_used(user)
    if used + content_length > quota + 64 * 1024:
        raise ServiceError(
            f"This upload ({human_bytes(content_length)}) would take you past your storage quota: "
            f"{human_bytes(used)} of {human_bytes(quota)} used.",
            status_code=413,
        )


# --- input checks -----------------------------------------------------------------------------------------------
def parse_format(fmt: str | None) -> str:
    fmt = (fmt or "").strip()
    if fmt in ("", "auto"):
        return ""
    if fmt not in FORMATS:
        raise ServiceError(f"Unknown format '{fmt}'. Use one of: auto, {', '.join(FORMATS)}.", field="format")
    return fmt


def parse_column_mapping(raw: Any) -> dict[str, str] | None:
    if raw in (None, "", {}):
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ServiceError(f"column_mapping is not valid JSON: {exc.msg} at column {exc.colno}.",
                               field="column_mapping") from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise ServiceError('column_mapping must map field names to source columns, e.g. {"instruction": "question"}.',
                           field="column_mapping")
    return raw or None


def _default_name(filename: str) -> str:
    base = filename
    for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".csv", ".parquet"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
    return (base.replace("_", " ").strip() or "dataset")[:200]


# --- upload -----------------------------------------------------------------------------------------------------
def create_dataset(
    *, owner: User, uploads: Sequence[Any], name: str | None = None, fmt: str | None = None,
    column_mapping: Any = None,
) -> Dataset:
    """Check and store uploaded files as a new dataset (version 1) and queue its processing."""
    if not uploads:
        raise ServiceError("Choose a file to upload (field `file`).", field="file")
    if len(uploads) > settings.DATASET_MAX_FILES:
        raise ServiceError(f"Too many files at once: {len(uploads)}; upload at most {settings.DATASET_MAX_FILES} "
                           "per dataset.", field="file")
    fmt = parse_format(fmt)
    mapping = parse_column_mapping(column_mapping)
    checked = [check_uploaded_file(u.temporary_file_path(), u.name) for u in uploads]
    total = sum(c.size_bytes for c in checked)
    stored: list[str] = []
    try:
        with transaction.atomic():
            # Row lock on the user: parallel uploads are counted one after the other against the quota.
            User.objects.select_for_update().filter(pk=owner.pk).first()
            _check_quota(owner, total)
            dataset = Dataset.objects.create(
                owner=owner, name=(name or "").strip()[:200] or _default_name(checked[0].original_filename),
                format_override=fmt, format=fmt, column_mapping=mapping, size_bytes=total,
                original_filename=checked[0].original_filename, operation={"type": "upload"},
            )
            for c in checked:
                stored.append(_store(dataset, c, DatasetFile.Role.SOURCE).file.name)
            _enqueue_processing(dataset)
    except Exception:
        for key in stored:
            with contextlib.suppress(Exception):
                default_storage.delete(key)
        raise
    logger.info("dataset %s uploaded by user %s (%s files, %s bytes)", dataset.pk, owner.pk, len(checked), total)
    return dataset


def _store(dataset: Dataset, c: CheckedFile, role: str) -> DatasetFile:
    df = DatasetFile(dataset=dataset, role=role, kind=c.kind, compressed=c.compressed,
                     original_filename=c.original_filename[:255], size_bytes=c.size_bytes, sha256=c.sha256)
    with open(c.path, "rb") as fh:
        df.file.save("upload", File(fh), save=False)  # the key comes from dataset_file_key
    df.save()
    return df


def _enqueue_processing(dataset: Dataset) -> None:
    from . import tasks

    token = str(dataset.run_token)
    transaction.on_commit(lambda: tasks.process_dataset.apply_async(args=[dataset.pk, token], queue="default"))


# --- processing -------------------------------------------------------------------------------------------------
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


def _tokenizer_path(base_model: str | None) -> str:
    from training.engine.embedded import EMBEDDED_MODEL_ID, resolve_model_path

    return resolve_model_path(base_model or EMBEDDED_MODEL_ID)


def _progress_reporter(dataset: Dataset) -> Callable[[float], None]:
    last = [0.0]

    def report(fraction: float) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and fraction < 1.0:
            return
        last[0] = now
        Dataset.objects.filter(pk=dataset.pk).update(progress=max(0.0, min(1.0, fraction)))
        events.publish_task_progress(dataset.owner_id, kind="dataset", task_id=dataset.pk, progress=fraction,
                                     status=Dataset.Status.PROCESSING)

    return report


def process_dataset(dataset_id: int, run_token: str) -> None:
    """Validate a dataset version and store its report (idempotent: a stale or repeated run changes nothing)."""
    claimed = Dataset.objects.filter(
        pk=dataset_id, run_token=run_token, status__in=[Dataset.Status.UPLOADED, Dataset.Status.PROCESSING]
    ).update(status=Dataset.Status.PROCESSING, progress=0.0)
    if not claimed:
        logger.info("dataset %s: run %s is stale or done, skipping", dataset_id, run_token)
        return
    dataset = Dataset.objects.select_related("owner").get(pk=dataset_id)
    events.publish_task_progress(dataset.owner_id, kind="dataset", task_id=dataset.pk, progress=0.0,
                                 status=Dataset.Status.PROCESSING)
    from datasets_app.validation import validate_files

    opts = dataset.validation_settings or {}
    try:
        if dataset.operation.get("type") in ("preprocess", "split") and not dataset.files.exists():
            _materialize_version(dataset)
        with local_paths(dataset) as paths:
            report = validate_files(
                paths, fmt=dataset.format_override or None, column_mapping=dataset.column_mapping,
                tokenizer_path=_tokenizer_path(opts.get("base_model")),
                max_length=int(opts.get("max_length") or settings.DATASET_DEFAULT_MAX_LENGTH),
                progress=_progress_reporter(dataset),
            )
        _name_files_in_report(dataset, report)
    except ServiceError as exc:
        report = None
        error = exc.message
    except (ValueError, EngineError) as exc:  # a bad step, split or template named by the library
        report = None
        error = str(exc)
    except Exception:
        logger.exception("dataset %s: processing failed", dataset_id)
        report = None
        error = "Processing failed because of an internal error; try Re-validate, or contact an operator."
    with transaction.atomic():
        row = Dataset.objects.select_for_update().get(pk=dataset_id)
        if str(row.run_token) != str(run_token):
            return  # superseded by a newer run while we worked
        if report is None:
            row.status, row.verdict, row.error = Dataset.Status.INVALID, Dataset.Verdict.INVALID, error
        else:
            row.report = report
            row.verdict = report.get("verdict", "invalid")
            row.format = report.get("format") or row.format
            row.row_count = int(report.get("rows_valid") or 0)
            row.status = Dataset.Status.INVALID if row.verdict == "invalid" else Dataset.Status.READY
            row.error = _summarize_errors(report) if row.verdict == "invalid" else ""
        row.progress = 1.0
        row.save()
    events.publish_task_progress(row.owner_id, kind="dataset", task_id=row.pk, progress=1.0, status=row.status)


def _name_files_in_report(dataset: Dataset, report: dict[str, Any]) -> None:
    # The library sees storage paths; users know their own file names.
    names = {Path(f.file.name).name: f.original_filename for f in dataset.files.all()}
    for key in ("errors",):
        for err in report.get(key) or []:
            if isinstance(err, dict) and err.get("file"):
                err["file"] = names.get(Path(str(err["file"])).name, err["file"])
    for f in report.get("files") or []:
        if isinstance(f, dict) and f.get("name"):
            f["name"] = names.get(Path(str(f["name"])).name, f["name"])


def _summarize_errors(report: dict[str, Any]) -> str:
    errors = report.get("errors") or []
    if not errors:
        return "The dataset has no usable rows."
    first = errors[0]
    where = f"{first.get('file', '')} line {first.get('line')}: " if first.get("line") else ""
    more = report.get("errors_total", len(errors)) - 1
    return f"{where}{first.get('message', '')}" + (f" (and {more} more errors)" if more > 0 else "")


def revalidate(dataset: Dataset, *, base_model: str | None = None, max_length: int | None = None,
               fmt: str | None = None, column_mapping: Any = None, mapping_given: bool = False) -> Dataset:
    """Run processing again, optionally with another tokenizer, max length, format or column mapping."""
    if dataset.status == Dataset.Status.PROCESSING and dataset.progress < 1.0 and not dataset.files.exists():
        raise ServiceError("This version is still being built; wait for it to finish.", status_code=409)
    opts = dict(dataset.validation_settings or {})
    if base_model:
        opts["base_model"] = base_model
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
        _enqueue_processing(row)
    return row


def update_dataset(dataset: Dataset, *, name: str | None = None, fmt: str | None = None,
                   column_mapping: Any = None, mapping_given: bool = False) -> Dataset:
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
    _require_processed(dataset)
    return dict(dataset.report or {})


def get_statistics(dataset: Dataset) -> dict[str, Any]:
    _require_processed(dataset)
    stats = (dataset.report or {}).get("statistics")
    if stats is None:
        from datasets_app.validation import statistics

        with local_paths(dataset) as paths:
            stats = statistics(paths, fmt=dataset.format or None, column_mapping=dataset.column_mapping)
    return stats


def get_preview(dataset: Dataset, *, offset: int, limit: int, base_model: str | None = None) -> dict[str, Any]:
    """Rows rendered as the model sees them (chat template applied, trained spans marked)."""
    if offset < 0 or not 1 <= limit <= 100:
        raise ServiceError("offset must be >= 0 and limit between 1 and 100.")
    if dataset.status != Dataset.Status.READY and not dataset.format:
        _require_processed(dataset)
    from datasets_app.validation import preview

    opts = dataset.validation_settings or {}
    with local_paths(dataset) as paths:
        return preview(paths, fmt=dataset.format or dataset.format_override or None,
                       column_mapping=dataset.column_mapping,
                       tokenizer_path=_tokenizer_path(base_model or opts.get("base_model")),
                       offset=offset, limit=limit, max_length=opts.get("max_length"))


# --- versions ---------------------------------------------------------------------------------------------------
def with_lineage_info(qs: QuerySet[Dataset]) -> QuerySet[Dataset]:
    """Annotate each version with its lineage's first version's id (`root_pk`), newest version number
    (`newest_version`) and its files as one JSON array (`files_json`, DatasetSerializer's `files`), all computed by
    PostgreSQL in the list's one query: a list then costs the same queries whatever its length, with no model
    instance per file. The subqueries are fixed SQL (`_lineage_sql`): building them with the ORM cost more CPU per
    request than the whole rest of the dataset list."""
    sql = _lineage_sql()
    return qs.annotate(root_pk=RawSQL(sql["root_pk"], ()), newest_version=RawSQL(sql["newest_version"], ()),
                       files_json=RawSQL(sql["files_json"], (), output_field=JSONField()))


FILE_FIELDS = ("id", "role", "original_filename", "kind", "compressed", "size_bytes", "sha256")


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
    return list(with_lineage_info(Dataset.objects.filter(owner_id=dataset.owner_id, lineage=dataset.lineage))
                .order_by("version"))


def _new_version(dataset: Dataset, *, name: str | None, operation: dict[str, Any]) -> Dataset:
    _require_ready(dataset)
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=dataset.owner_id).first()
        _check_quota(dataset.owner, dataset.size_bytes)
        top = Dataset.objects.filter(lineage=dataset.lineage).aggregate(v=Max("version"))["v"] or 0
        child = Dataset.objects.create(
            owner_id=dataset.owner_id, name=(name or dataset.name).strip()[:200], lineage=dataset.lineage,
            version=top + 1, parent=dataset, operation=operation, status=Dataset.Status.UPLOADED,
            validation_settings=dataset.validation_settings, original_filename=dataset.original_filename,
        )
        _enqueue_processing(child)
    return child


STEP_OPTIONS: dict[str, set[str]] = {
    "normalize_unicode": set(),
    "strip_whitespace": set(),
    "dedupe": {"mode"},
    "redact_pii": set(),
    "apply_template": {"template"},
    "chunk": {"max_tokens", "overlap"},
    "filter_length": {"min_chars", "max_tokens"},
}


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
                raise ServiceError(f"Step {i} (chunk): need 16 <= max_tokens and 0 <= overlap < max_tokens.",
                                   field="steps")


def _require_ready(dataset: Dataset) -> None:
    # An "invalid" version with some good rows may still be cleaned: preprocessing drops the rows that fail.
    usable = dataset.status == Dataset.Status.INVALID and int((dataset.report or {}).get("rows_valid") or 0) > 0
    if dataset.status != Dataset.Status.READY and not usable:
        raise ServiceError("Only a validated dataset with usable rows can be preprocessed or split.",
                           status_code=409)


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
    return _new_version(dataset, name=None,
                        operation={"type": "split", "validation_ratio": validation_ratio, "seed": seed})


def _materialize_version(dataset: Dataset) -> None:
    """Build the files of a preprocess/split version from its parent (inside the processing task)."""
    from datasets_app.validation import preprocess as run_preprocess
    from datasets_app.validation import split as run_split

    parent = dataset.parent
    if parent is None:
        raise ServiceError("The version this one was made from was deleted.")
    op = dataset.operation
    tmp = tempfile.mkdtemp(prefix="finetune-ver-")
    try:
        with local_paths(parent) as paths:
            fmt = parent.format or None
            if op["type"] == "preprocess":
                out = os.path.join(tmp, "data.jsonl")
                result = run_preprocess(paths, fmt=fmt, column_mapping=parent.column_mapping, steps=op["steps"],
                                        out_path=out, tokenizer_path=_tokenizer_path(
                                            (parent.validation_settings or {}).get("base_model")))
                outputs = [(out, DatasetFile.Role.SOURCE)]
            else:
                train, val = os.path.join(tmp, "train.jsonl"), os.path.join(tmp, "validation.jsonl")
                result = run_split(paths, fmt=fmt, column_mapping=parent.column_mapping,
                                   validation_ratio=float(op["validation_ratio"]), seed=int(op["seed"]),
                                   train_out=train, validation_out=val)
                outputs = [(train, DatasetFile.Role.TRAIN), (val, DatasetFile.Role.VALIDATION)]
        from .uploads import sha256_of

        with transaction.atomic():
            total = 0
            for path, role in outputs:
                size = Path(path).stat().st_size
                total += size
                _store(dataset, CheckedFile(path=path, original_filename=f"{role}.jsonl", kind="jsonl",
                                            compressed=False, size_bytes=size, sha256=sha256_of(path)), role)
            Dataset.objects.filter(pk=dataset.pk).update(
                size_bytes=total, column_mapping=None, format_override="",
                operation={**op, "result": result},
            )
        dataset.refresh_from_db()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- download and delete ----------------------------------------------------------------------------------------
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
    import zipfile

    tmp = tempfile.TemporaryFile()
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            with f.file.open("rb") as src, zf.open(f"{f.role}-{f.original_filename or f.pk}", "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    tmp.seek(0)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in dataset.name)[:80] or "dataset"
    return tmp, f"{safe}-v{dataset.version}.zip"


def delete_dataset(dataset: Dataset) -> None:
    """Delete a version and its files from storage."""
    keys = [f.file.name for f in dataset.files.all()]
    with transaction.atomic():
        dataset.delete()
        transaction.on_commit(lambda: [default_storage.delete(k) for k in keys])
