"""JobWatcher without a platform (the REST API answered by httpx2's MockTransport, no websocket listening): it polls,
rides out a server that is briefly away, yields each point once in order, and does not swallow a 4xx."""

from __future__ import annotations

import httpx2
import pytest
from finetune_client import ApiError, Client

from tests.processes import free_port

POINTS = [{"seq": n, "kind": "metric", "step": n, "loss": 2.0 / n, "extra": {"total_steps": 3}} for n in (1, 2, 3)]


def platform(job_answers):
    """A client whose job detail answers come from `job_answers` in turn (an int is an error status)."""
    answers = iter(job_answers)

    def handle(request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/metrics/"):
            after = int(request.url.params.get("after_seq", 0))
            return httpx2.Response(200, json=[p for p in POINTS if p["seq"] > after])
        answer = next(answers)
        if isinstance(answer, int):
            return httpx2.Response(answer, json={"detail": f"status {answer}", "errors": {}})
        return httpx2.Response(200, json={"id": 1, "status": answer, "phase": "", "error": "", "model": 9})

    return Client(f"http://127.0.0.1:{free_port()}", "token", transport=httpx2.MockTransport(handle))


def test_it_polls_through_an_outage_and_yields_each_point_once_in_order():
    with platform(["running", 502, 502, "running", "succeeded"]) as client:
        watcher = client.jobs.watch(1, poll_interval=0.02)
        events = list(watcher)
    assert [e["seq"] for e in events if e["type"] == "metric"] == [1, 2, 3]
    assert [e["total_steps"] for e in events if e["type"] == "metric"] == [3, 3, 3]  # `extra` merged in
    assert [e["status"] for e in events if e["type"] == "status"] == ["running", "succeeded"]
    assert watcher.job["model"] == 9 and watcher.connects == 0 and watcher.backfilled_points == 3


def test_a_refusal_during_the_watch_is_not_swallowed():
    with platform(["running", 404]) as client, pytest.raises(ApiError, match="status 404"):
        list(client.jobs.watch(1, poll_interval=0.02))
