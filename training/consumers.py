"""`/ws/training/<job id>/`: live metric points, status changes and log lines of one job, for its owner only."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .events import job_group
from .models import TrainingJob


def _owns(user: Any, job_id: int) -> bool:
    return bool(user and user.is_authenticated and TrainingJob.objects.filter(pk=job_id, owner=user).exists())


class JobConsumer(AsyncJsonWebsocketConsumer):
    """Joins `job-<pk>` after checking ownership (4403 otherwise) and forwards its messages."""

    group: str | None = None

    async def connect(self) -> None:
        job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        if not await database_sync_to_async(_owns)(self.scope.get("user"), job_id):
            await self.close(code=4403)
            return
        self.group = job_group(job_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_event(self, event: dict[str, Any]) -> None:
        await self.send_json(event["payload"])
