"""Processing a dataset version in the Celery task: build its files first when it is a preprocess/split version,
validate them into the report, and save the outcome (status, verdict, format, row count)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction

from accounts import realtime as events
from finetune.exceptions import ServiceError
from training.engine.errors import EngineError

from .base_models import chosen_tokenizer
from .files import local_paths, store_file
from .models import Dataset, DatasetFile
from .uploads import CheckedFile, sha256_of

logger = logging.getLogger(__name__)

# The Celery task, sent by name (datasets_app/tasks.py calls into this module, never the other way round).
PROCESS_TASK = "datasets_app.tasks.process_dataset"
INTERNAL_ERROR = "Processing failed because of an internal error; try Re-validate, or contact an operator."


def enqueue_processing(dataset: Dataset) -> None:
    """Queue the processing task for the version's current run token once the transaction commits."""
    token = str(dataset.run_token)
    transaction.on_commit(lambda: current_app.send_task(PROCESS_TASK, args=[dataset.pk, token], queue="default"))


def read_limits() -> contextlib.AbstractContextManager[Any]:
    """The reading limits of the settings, for every pass over a dataset's files (validation, preview, statistics,
    preprocessing, split): decompressed bytes per file and bytes per line."""
    from datasets_app.validation import read_limits as limits

    return limits(max_bytes=settings.DATASET_MAX_DECOMPRESSED_BYTES, max_line_bytes=settings.DATASET_MAX_LINE_BYTES)


def _progress_reporter(dataset: Dataset) -> Callable[[float], None]:
    last = [0.0]

    def report(fraction: float) -> None:
        now = time.monotonic()
        if now - last[0] < 0.5 and fraction < 1.0:
            return
        last[0] = now
        Dataset.objects.filter(pk=dataset.pk).update(progress=max(0.0, min(1.0, fraction)))
        events.publish_task_progress(
            dataset.owner_id, kind="dataset", task_id=dataset.pk, progress=fraction, status=Dataset.Status.PROCESSING
        )

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
    events.publish_task_progress(
        dataset.owner_id, kind="dataset", task_id=dataset.pk, progress=0.0, status=Dataset.Status.PROCESSING
    )
    report, error = _validate(dataset)
    row = _save_outcome(dataset_id, run_token, report, error)
    if row is not None:
        events.publish_task_progress(row.owner_id, kind="dataset", task_id=row.pk, progress=1.0, status=row.status)


def _validate(dataset: Dataset) -> tuple[dict[str, Any] | None, str]:
    """The version's report, or None and the message to show when it could not be made."""
    from datasets_app.validation import validate_files

    opts = dataset.validation_settings or {}
    try:
        if dataset.operation.get("type") in ("preprocess", "split") and not dataset.files.exists():
            _materialize_version(dataset)
        with (
            local_paths(dataset) as paths,
            read_limits(),
            chosen_tokenizer(dataset.owner_id, opts.get("base_model")) as tokenizer,
        ):
            report = validate_files(
                paths,
                fmt=dataset.format_override or None,
                column_mapping=dataset.column_mapping,
                tokenizer_path=tokenizer.folder,
                max_length=int(opts.get("max_length") or settings.DATASET_DEFAULT_MAX_LENGTH),
                progress=_progress_reporter(dataset),
            )
        _name_files_in_report(dataset, report)
        if tokenizer.name and report.get("tokens"):  # the catalogue's name, not the folder's
            report["tokens"]["tokenizer"] = tokenizer.name
    except ServiceError as exc:
        return None, exc.message
    except (ValueError, EngineError) as exc:  # a bad step, split or template named by the library
        return None, str(exc)
    except Exception:
        logger.exception("dataset %s: processing failed", dataset.pk)
        return None, INTERNAL_ERROR
    return report, ""


def _save_outcome(dataset_id: int, run_token: str, report: dict[str, Any] | None, error: str) -> Dataset | None:
    """Store the report (or the error) unless a newer run superseded this one (then None)."""
    with transaction.atomic():
        row = Dataset.objects.select_for_update().get(pk=dataset_id)
        if str(row.run_token) != str(run_token):
            return None  # superseded by a newer run while we worked
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
    return row


def _name_files_in_report(dataset: Dataset, report: dict[str, Any]) -> None:
    # The library sees storage paths; users know their own file names.
    names = {Path(f.file.name).name: f.original_filename for f in dataset.files.all()}
    for err in report.get("errors") or []:
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


def _materialize_version(dataset: Dataset) -> None:
    """Build the files of a preprocess/split version from its parent (inside the processing task)."""
    parent = dataset.parent
    if parent is None:
        raise ServiceError("The version this one was made from was deleted.")
    op = dataset.operation
    tmp = tempfile.mkdtemp(prefix="finetune-ver-")
    try:
        result, outputs = _build_from_parent(parent, op, tmp)
        with transaction.atomic():
            total = 0
            for path, role in outputs:
                size = Path(path).stat().st_size
                total += size
                store_file(
                    dataset,
                    CheckedFile(
                        path=path,
                        original_filename=f"{role}.jsonl",
                        kind="jsonl",
                        compressed=False,
                        size_bytes=size,
                        sha256=sha256_of(path),
                    ),
                    role,
                )
            Dataset.objects.filter(pk=dataset.pk).update(
                size_bytes=total,
                column_mapping=None,
                format_override="",
                operation={**op, "result": result},
            )
        dataset.refresh_from_db()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _build_from_parent(parent: Dataset, op: dict[str, Any], tmp: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Run the preprocess steps or the split on the parent's files into ``tmp``: the library's result and the
    (path, role) of each output file."""
    from datasets_app.validation import preprocess as run_preprocess
    from datasets_app.validation import split as run_split

    with local_paths(parent) as paths, read_limits():
        fmt = parent.format or None
        if op["type"] == "preprocess":
            out = os.path.join(tmp, "data.jsonl")
            with chosen_tokenizer(parent.owner_id, (parent.validation_settings or {}).get("base_model")) as tokenizer:
                result = run_preprocess(
                    paths,
                    fmt=fmt,
                    column_mapping=parent.column_mapping,
                    steps=op["steps"],
                    out_path=out,
                    tokenizer_path=tokenizer.folder,
                )
            return result, [(out, DatasetFile.Role.SOURCE)]
        train, val = os.path.join(tmp, "train.jsonl"), os.path.join(tmp, "validation.jsonl")
        result = run_split(
            paths,
            fmt=fmt,
            column_mapping=parent.column_mapping,
            validation_ratio=float(op["validation_ratio"]),
            seed=int(op["seed"]),
            train_out=train,
            validation_out=val,
        )
        return result, [(train, DatasetFile.Role.TRAIN), (val, DatasetFile.Role.VALIDATION)]
