"""Datasets' side of the quotas: the storage the user's datasets take (registered with accounts.quotas, which holds
the limits and the checks), and the early upload check against it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Sum

from accounts import quotas
from accounts.models import User
from finetune.exceptions import ServiceError

from .models import DatasetFile


def _bytes_of(user_id: int) -> int:
    return int(DatasetFile.objects.filter(dataset__owner_id=user_id).aggregate(n=Sum("size_bytes"))["n"] or 0)


def storage_used(user: User) -> int:
    """Bytes of storage the user's datasets take."""
    return _bytes_of(user.pk)


def storage_usage(user_id: int, now: datetime, known: dict[str, Any]) -> dict[str, Any]:
    """The usage source datasets register with accounts.quotas (see DatasetsAppConfig.ready)."""
    return {"storage_bytes": _bytes_of(user_id)}


def check_upload_size_early(user: User, content_length: int) -> None:
    """Refuse before reading the body when the declared size is over the cap or the quota."""
    if content_length > settings.DATASET_MAX_UPLOAD_BYTES + 64 * 1024:
        from .uploads import too_large_message

        raise ServiceError(too_large_message(content_length), status_code=413)
    quotas.check_storage(user.quotas(), storage_used(user), content_length, slack_bytes=64 * 1024)
