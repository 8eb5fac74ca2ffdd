"""The whole chain for real: HTTP POST -> daphne -> Celery task in a worker process -> Redis channel layer ->
daphne -> a websocket client."""

from __future__ import annotations

import asyncio
import json

import pytest
import requests
import websockets

from tests.processes import run_async

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


def test_celery_task_message_reaches_websocket_client_through_daphne(daphne_url, celery_worker_process):
    session = requests.Session()
    session.get(f"{daphne_url}/api/auth/csrf/").raise_for_status()
    csrf = session.cookies["csrftoken"]
    headers = {"X-CSRFToken": csrf, "Referer": daphne_url + "/"}
    r = session.post(
        f"{daphne_url}/api/auth/register/",
        json={"username": "chain", "email": "chain@example.com", "password": "x-Strong-pass-1"},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    cookie = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    ws_url = daphne_url.replace("http://", "ws://") + "/ws/notifications/"

    async def scenario() -> dict:
        async with websockets.connect(ws_url, additional_headers={"Cookie": cookie}, origin=daphne_url) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
            headers2 = {"X-CSRFToken": session.cookies["csrftoken"], "Referer": daphne_url + "/"}
            resp = await asyncio.to_thread(session.post, f"{daphne_url}/api/notifications/test/", headers=headers2)
            assert resp.status_code == 202, resp.text
            nonce = resp.json()["nonce"]
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if msg.get("type") == "notification" and msg.get("nonce") == nonce:
                    return msg

    msg = run_async(scenario())
    assert msg["kind"] == "test" and msg["worker"] == celery_worker_process


def test_websocket_without_session_is_refused_by_daphne(daphne_url):
    ws_url = daphne_url.replace("http://", "ws://") + "/ws/notifications/"

    async def scenario() -> None:
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(ws_url, origin="http://evil.example.com"):
                pass

    run_async(scenario())
