"""The fine-tuned model registry: listing, versions, rename and tag, compare, delete with its artifacts, and what a
model's page shows about its training (dataset, evaluation report, loss curve). The playground is models_app/playground.py."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery

from finetune import artifacts
from finetune.exceptions import ServiceError

from .models import FineTunedModel, TaskStatus

if TYPE_CHECKING:
    from accounts.models import User

logger = logging.getLogger(__name__)

LOSS_CURVE_MAX_POINTS = 2000


# --- registry ----------------------------------------------------------------------------------------------------


def owned_models(owner: User | int) -> QuerySet[FineTunedModel]:
    """The owner's fine-tuned models, annotated with `latest_version` (of their name) and `exports_count`."""
    latest = (
        FineTunedModel.objects.filter(owner=OuterRef("owner"), name=OuterRef("name"))
        .order_by("-version")
        .values("version")[:1]
    )
    return (
        FineTunedModel.objects.filter(owner=owner)
        .select_related("base_model", "job", "job__dataset")
        .annotate(latest_version=Subquery(latest), exports_count=Count("exports", distinct=True))
        .order_by("-created", "-id")
    )


def filter_models(
    qs: QuerySet[FineTunedModel],
    *,
    name: str | None = None,
    search: str | None = None,
    base_model: int | None = None,
    latest_only: bool = False,
) -> QuerySet[FineTunedModel]:
    """Narrow `owned_models`: exact name, name/tag search, base model id, only the newest version of each name."""
    if name:
        qs = qs.filter(name=name)
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(tag__icontains=search))
    if base_model is not None:
        qs = qs.filter(base_model_id=base_model)
    if latest_only:
        qs = qs.filter(version=F("latest_version"))
    return qs


def is_latest(model: FineTunedModel) -> bool:
    """True when no other model of the same owner and name has a higher version."""
    latest = getattr(model, "latest_version", None)
    if latest is None:
        latest = (
            FineTunedModel.objects.filter(owner_id=model.owner_id, name=model.name)
            .order_by("-version")
            .values_list("version", flat=True)
            .first()
        )
    return latest is None or model.version >= latest


def versions_of(model: FineTunedModel) -> QuerySet[FineTunedModel]:
    """Every version of the model's name (same owner), newest first."""
    return owned_models(model.owner_id).filter(name=model.name).order_by("-version", "-id")


def update_model(
    model: FineTunedModel, *, name: str | None = None, tag: str | None = None, notes: str | None = None
) -> FineTunedModel:
    """Change tag and notes of one version; a new `name` renames every version of the model together, so version
    numbers stay unique and gap-free under the new name (refused with 409 when the owner already uses that name)."""
    with transaction.atomic():
        model = FineTunedModel.objects.select_for_update().get(pk=model.pk)
        if name is not None:
            name = name.strip()
            if not name:
                raise ServiceError("The name cannot be empty.", field="name")
            if name != model.name:
                taken = FineTunedModel.objects.filter(owner_id=model.owner_id, name=name).exists()
                if taken:
                    raise ServiceError(
                        f"You already have a model named '{name}'. Renaming moves every version of "
                        f"'{model.name}' to the new name, so choose a name you do not use yet.",
                        field="name",
                        status_code=409,
                    )
                try:
                    with transaction.atomic():
                        FineTunedModel.objects.filter(owner_id=model.owner_id, name=model.name).update(name=name)
                except IntegrityError as exc:  # a concurrent rename took the name first
                    raise ServiceError(
                        f"You already have a model named '{name}'.", field="name", status_code=409
                    ) from exc
                model.name = name
        fields = []
        if tag is not None:
            model.tag = tag.strip()
            fields.append("tag")
        if notes is not None:
            model.notes = notes
            fields.append("notes")
        if fields:
            model.save(update_fields=fields)
    logger.info("model %s: updated (%s)", model.pk, ", ".join(fields + (["name"] if name else [])) or "nothing")
    return model


@dataclass(frozen=True)
class DeletedArtifacts:
    """What `delete_model` removed from the artifact store."""

    model_key: str | None
    files: tuple[str, ...]


def delete_model(model: FineTunedModel) -> DeletedArtifacts:
    """Delete a fine-tuned model with its artifacts: its stored folder and the stored files of its exports. Refused (409) while an export, push or import of it is running."""
    busy_states = (TaskStatus.QUEUED, TaskStatus.RUNNING)
    busy = [
        label
        for label, rel in (
            ("an export", model.exports),
            ("a push to the Hub", model.hub_pushes),
            ("an Ollama import", model.ollama_imports),
        )
        if rel.filter(status__in=busy_states).exists()
    ]
    if busy:
        raise ServiceError(
            f"Wait for {' and '.join(busy)} of this model to finish before deleting it.", status_code=409
        )
    keys = tuple(k for k in model.exports.exclude(file_key="").values_list("file_key", flat=True))
    model_key = model.artifact_key
    # Another row naming the same stored object (same bytes) keeps it.
    if model_key and FineTunedModel.objects.filter(artifact_key=model_key).exclude(pk=model.pk).exists():
        model_key = ""
    pk = model.pk
    with transaction.atomic():
        model.delete()
    # The row is gone (committed): now the files. A failure here leaves an orphan file, never a dangling row.
    removed: list[str] = []
    for key in keys:
        try:
            if default_storage.exists(key):
                default_storage.delete(key)
                removed.append(key)
        except Exception:  # noqa: BLE001 - storage hiccup: log it, the model is deleted anyway
            logger.exception("model %s: could not delete stored file %s", pk, key)
    if model_key:
        artifacts.delete(model_key)
    logger.info("model %s: deleted (model %s, %d export files)", pk, model_key or "-", len(removed))
    return DeletedArtifacts(model_key=model_key or None, files=tuple(removed))


def loss_curve(model: FineTunedModel) -> list[dict[str, Any]]:
    """The model's training job's logged points with a loss or an eval loss, in order (thinned to at most
    LOSS_CURVE_MAX_POINTS), read through the job's relation (models_app does not import training)."""
    if model.job_id is None:
        return []
    rows = list(
        model.job.metric_points.filter(Q(loss__isnull=False) | Q(eval_loss__isnull=False))
        .order_by("seq")
        .values("seq", "kind", "step", "epoch", "loss", "eval_loss", "learning_rate")
    )
    if len(rows) > LOSS_CURVE_MAX_POINTS:
        stride = -(-len(rows) // LOSS_CURVE_MAX_POINTS)
        rows = [r for i, r in enumerate(rows) if i % stride == 0 or r["kind"] == "eval" or i == len(rows) - 1]
    return rows


def dataset_info(model: FineTunedModel) -> dict[str, Any] | None:
    """The dataset the model was trained on (from its job): id, name, version, format, rows and content hash."""
    job = model.job
    if job is None:
        return None
    ds = job.dataset
    return {
        "id": ds.pk,
        "name": ds.name,
        "version": ds.version,
        "format": ds.format,
        "rows": ds.row_count,
        "sha256": job.dataset_sha256,
    }


def eval_report(model: FineTunedModel) -> dict[str, Any] | None:
    """Evaluation results: eval loss / perplexity before and after training, and the job's base-vs-fine-tuned
    comparison (answers to held-out prompts, per-example losses) when the run made one."""
    metrics = model.metrics or {}
    keys = ("eval_loss_before", "eval_loss_after", "perplexity_before", "perplexity_after")
    summary = {k: metrics[k] for k in keys if metrics.get(k) is not None}
    comparison = model.evaluation or ((model.job.result or {}).get("comparison") if model.job else None) or None
    if not summary and not comparison:
        return None
    return {**summary, "comparison": comparison}


def _rows(a: dict[str, Any], b: dict[str, Any], *, numeric_delta: bool = False) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        row: dict[str, Any] = {"name": key, "a": va, "b": vb, "changed": va != vb}
        if numeric_delta:
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (va, vb))
            row["delta"] = (vb - va) if numeric else None  # type: ignore[operator]
        rows.append(row)
    return rows


def _setup(model: FineTunedModel) -> dict[str, Any]:
    job = model.job
    return {
        "base_model": model.base_model.repo_id,
        "method": model.method,
        "weights": model.weights,
        "backend": job.backend if job else None,
    }


def compare_models(a: FineTunedModel, b: FineTunedModel) -> dict[str, Any]:
    """Side by side: per-model dataset, metrics, eval report and loss curve (to overlay), plus rows of setup,
    hyperparameter and metric differences (`a`, `b`, `changed`, and `delta` = b - a for numbers)."""

    def side(m: FineTunedModel) -> dict[str, Any]:
        return {
            "dataset": dataset_info(m),
            "metrics": m.metrics or {},
            "hyperparameters": m.hyperparameters or {},
            "eval_report": eval_report(m),
            "loss_curve": loss_curve(m),
            "job": {"id": m.job_id, "status": m.job.status, "finished": m.job.finished} if m.job else None,
        }

    da, db = dataset_info(a), dataset_info(b)
    return {
        "a": side(a),
        "b": side(b),
        "setup": _rows(_setup(a), _setup(b)),
        "hyperparameters": _rows(a.hyperparameters or {}, b.hyperparameters or {}),
        "metrics": _rows(a.metrics or {}, b.metrics or {}, numeric_delta=True),
        "same_dataset": bool(da and db and (da["id"] == db["id"] or (da["sha256"] and da["sha256"] == db["sha256"]))),
    }
