"""An idle websocket stays open longer than the channel layer's blocking-pop timeout (regression: redis-py 8's 5 s
default read timeout killed idle sockets with "Timeout reading from redis")."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from finetune.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_idle_notification_socket_survives_and_still_receives():
    from django.test import Client

    from accounts import realtime as events
    from accounts.models import User

    @sync_to_async
    def login():
        user = User.objects.create_user(username="idle", email="idle@example.com", password="x-Strong-pass-1")
        c = Client()
        c.force_login(user)
        return f"sessionid={c.cookies['sessionid'].value}".encode(), user.pk

    cookie, user_id = await login()
    comm = WebsocketCommunicator(
        application, "/ws/notifications/", headers=[(b"cookie", cookie), (b"origin", b"http://localhost")]
    )
    assert (await comm.connect())[0]
    await comm.receive_json_from()
    await asyncio.sleep(12)  # more than two blocking-pop rounds
    await sync_to_async(events.notify_user)(user_id, {"type": "notification", "message": "still here"})
    assert (await comm.receive_json_from(timeout=5))["message"] == "still here"
    await comm.disconnect()
    await database_sync_to_async(connections.close_all)()
