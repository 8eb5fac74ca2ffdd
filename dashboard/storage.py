"""Storage usage per user and in total, for the operators' storage page: dataset files, exported artifacts, stored
checkpoints and produced models, and the base-model snapshots downloaded from the Hub (counted for the user who
downloaded them), from the sizes the database records (nothing is walked on disk)."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, F, Sum

from accounts.models import User
from datasets_app.models import DatasetFile
from models_app.models import BaseModel, FineTunedModel, ModelExport
from training.models import TrainingJob


def storage_usage() -> dict[str, Any]:
    """Storage per user and in total, from the sizes recorded in the database: dataset files, exported artifacts,
    runs (stored checkpoints and produced models in the artifact store) and base models (Hub snapshots in the
    artifact store, per downloader; those whose downloader is gone count in the totals only). `runs_unknown` stays 0
    (kept for the page's shape: nothing is walked on disk any more)."""
    rows: dict[int, dict[str, Any]] = {}

    def row(user_id: int) -> dict[str, Any]:
        return rows.setdefault(
            user_id,
            {
                "user_id": user_id,
                "datasets_bytes": 0,
                "datasets": 0,
                "exports_bytes": 0,
                "runs_bytes": 0,
                "runs": 0,
                "runs_unknown": 0,
                "base_models_bytes": 0,
                "base_models": 0,
            },
        )

    for r in DatasetFile.objects.values("dataset__owner_id").annotate(
        n=Sum("size_bytes"), d=Count("dataset", distinct=True)
    ):
        row(r["dataset__owner_id"]).update(datasets_bytes=int(r["n"] or 0), datasets=r["d"])
    for r in ModelExport.objects.values("owner_id").annotate(n=Sum("size_bytes")):
        row(r["owner_id"])["exports_bytes"] = int(r["n"] or 0)
    # Runs: what jobs keep in the artifact store (the newest checkpoint of each unfinished job and the one before it,
    # the models they produced); counted from the recorded sizes, no folder walked.
    for r in (
        TrainingJob.objects.exclude(checkpoint_key="")
        .values("owner_id")
        .annotate(n=Sum(F("checkpoint_size") + F("previous_checkpoint_size")), c=Count("id"))
    ):
        row(r["owner_id"]).update(runs_bytes=int(r["n"] or 0), runs=int(r["c"] or 0))
    for r in (
        FineTunedModel.objects.exclude(artifact_key="")
        .values("owner_id")
        .annotate(n=Sum("artifact_size"), c=Count("id"))
    ):
        target = row(r["owner_id"])
        target["runs_bytes"] += int(r["n"] or 0)
        target["runs"] += int(r["c"] or 0)
    # Base models: the Hub snapshots stored in the artifact store (the embedded default ships with the code).
    orphaned = {"base_models_bytes": 0, "base_models": 0}
    for r in (
        BaseModel.objects.exclude(artifact_key="")
        .values("added_by_id")
        .annotate(n=Sum("artifact_size"), c=Count("id"))
    ):
        target = row(r["added_by_id"]) if r["added_by_id"] is not None else orphaned
        target.update(base_models_bytes=int(r["n"] or 0), base_models=int(r["c"] or 0))
    names = dict(User.objects.filter(pk__in=rows).values_list("pk", "username"))
    quotas = {u.pk: int(u.quotas().get("storage_bytes") or 0) for u in User.objects.filter(pk__in=rows)}
    users = []
    for user_id, r in rows.items():
        r["username"] = names.get(user_id, f"#{user_id}")
        r["total_bytes"] = r["datasets_bytes"] + r["exports_bytes"] + r["runs_bytes"] + r["base_models_bytes"]
        r["quota_bytes"] = quotas.get(user_id, 0)
        r["quota_pct"] = round(100.0 * r["datasets_bytes"] / r["quota_bytes"], 1) if r["quota_bytes"] else None
        users.append(r)
    users.sort(key=lambda r: r["total_bytes"], reverse=True)
    totals = {
        k: sum(r[k] for r in users)
        for k in (
            "datasets_bytes",
            "exports_bytes",
            "runs_bytes",
            "total_bytes",
            "datasets",
            "runs",
            "runs_unknown",
            "base_models_bytes",
            "base_models",
        )
    }
    for k in ("base_models_bytes", "base_models"):
        totals[k] += orphaned[k]
    totals["total_bytes"] += orphaned["base_models_bytes"]
    return {"users": users, "totals": totals}
