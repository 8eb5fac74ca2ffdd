"""`/ws/notifications/` through the full ASGI stack (origin check + session auth) on the real Redis channel layer."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections

from finetune.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True)]


@sync_to_async
def _session_cookie(username: str) -> bytes:
    from django.test import Client

    from accounts.models import User

    user = User.objects.create_user(username=username, email=f"{username}@example.com", password="x-Strong-pass-1")
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode(), user.pk


async def _close_db() -> None:
    await database_sync_to_async(connections.close_all)()


async def test_signed_in_user_receives_their_notifications():
    from accounts import realtime as events

    cookie, user_id = await _session_cookie("wsuser")
    comm = WebsocketCommunicator(
        application, "/ws/notifications/", headers=[(b"cookie", cookie), (b"origin", b"http://localhost")]
    )
    connected, _ = await comm.connect()
    assert connected
    assert (await comm.receive_json_from())["type"] == "hello"
    await sync_to_async(events.publish_task_progress)(
        user_id, kind="export", task_id=7, progress=0.5, status="running"
    )
    msg = await comm.receive_json_from(timeout=5)
    assert msg == {"type": "task", "kind": "export", "id": 7, "progress": 0.5, "status": "running"}
    await comm.disconnect()
    await _close_db()


async def test_other_users_messages_do_not_leak():
    from accounts import realtime as events

    cookie, _ = await _session_cookie("wsa")
    _, other_id = await _session_cookie("wsb")
    comm = WebsocketCommunicator(
        application, "/ws/notifications/", headers=[(b"cookie", cookie), (b"origin", b"http://localhost")]
    )
    assert (await comm.connect())[0]
    await comm.receive_json_from()
    await sync_to_async(events.notify_user)(other_id, {"type": "notification", "message": "secret"})
    assert await comm.receive_nothing(timeout=0.5)
    await comm.disconnect()
    await _close_db()


async def test_anonymous_socket_is_refused():
    comm = WebsocketCommunicator(application, "/ws/notifications/", headers=[(b"origin", b"http://localhost")])
    connected, code = await comm.connect()
    assert not connected and code == 4401
    await comm.disconnect()  # let the refused application finish instead of being cancelled at loop teardown
    await _close_db()


@pytest.mark.parametrize("headers", [[], [(b"origin", b"http://evil.example.com")]], ids=["no-origin", "foreign"])
async def test_missing_or_foreign_origin_is_refused(headers):
    cookie, _ = await _session_cookie("wsorigin")
    comm = WebsocketCommunicator(application, "/ws/notifications/", headers=[(b"cookie", cookie), *headers])
    connected, _ = await comm.connect()
    assert not connected
    # The origin validator's denier keeps listening on the channel layer until it gets a disconnect; cancelling it
    # at event-loop teardown instead can hang inside channels-redis's receive.
    await comm.disconnect()
    await _close_db()


@sync_to_async
def _token(username: str) -> tuple[str, int]:
    from accounts.models import User
    from accounts.services import create_api_token

    user = User.objects.create_user(username=username, email=f"{username}@example.com", password="x-Strong-pass-1")
    return create_api_token(user, name="script").key, user.pk


async def test_an_api_token_signs_a_script_socket_in_and_a_bad_one_does_not():
    from accounts import realtime as events

    key, user_id = await _token("wstoken")
    comm = WebsocketCommunicator(
        application,
        "/ws/notifications/",
        headers=[(b"authorization", f"Token {key}".encode()), (b"origin", b"http://localhost")],
    )
    assert (await comm.connect())[0]
    assert (await comm.receive_json_from())["user"] == "wstoken"
    await sync_to_async(events.publish_task_progress)(user_id, kind="export", task_id=9, progress=1.0, status="done")
    assert (await comm.receive_json_from(timeout=5))["id"] == 9
    await comm.disconnect()
    for header in (b"Token not-a-key", b"Bearer " + key.encode()):
        bad = WebsocketCommunicator(
            application, "/ws/notifications/", headers=[(b"authorization", header), (b"origin", b"http://localhost")]
        )
        connected, _ = await bad.connect()
        assert not connected
        await bad.disconnect()
    await _close_db()
