"""The playground: input checks, the worker's model cache, REST answers from the embedded base and a fine-tuned
model, and token streaming over a real daphne websocket fed by a real Celery worker on the `inference` queue."""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import pytest
import websockets

from models_app import inference
from models_app.inference import InvalidRequest, LoadedModel, ModelCache, ModelRef, parse_request
from tests.conftest import ARTIFACTS
from tests.processes import run_async

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


# --- input checks (no database, no model) ------------------------------------------------------------------------


def test_a_good_request_is_parsed_with_defaults_and_system_first():
    req = parse_request({"messages": CAPITAL, "system": "Be brief."})
    assert req.chat() == [{"role": "system", "content": "Be brief."}, *CAPITAL]
    assert (req.max_new_tokens, req.temperature, req.top_p) == (256, 0.7, 0.9)
    assert parse_request(req.to_dict()) == req


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({}, "messages", "non-empty list"),
        ({"messages": "hello"}, "messages", "non-empty list"),
        (
            {"messages": [{"role": "robot", "content": "hi"}]},
            "messages",
            "role must be one of system, user, assistant",
        ),
        ({"messages": [{"role": "user", "content": 42}]}, "messages", "content must be a string"),
        ({"messages": [{"role": "user", "content": "  "}]}, "messages", "empty"),
        (
            {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
            "messages",
            "last message must be the user's",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "system", "content": "x"},
                    {"role": "user", "content": "hi"},
                ]
            },
            "messages",
            "system message may only come first",
        ),
        ({"messages": [{"role": "user", "content": "x" * 16_001}]}, "messages", "too long"),
        ({"messages": CAPITAL, "max_new_tokens": 0}, "max_new_tokens", "between 1 and 1024"),
        ({"messages": CAPITAL, "max_new_tokens": 1025}, "max_new_tokens", "between 1 and 1024"),
        ({"messages": CAPITAL, "max_new_tokens": 2.5}, "max_new_tokens", "whole number"),
        ({"messages": CAPITAL, "temperature": 2.5}, "temperature", "between 0 and 2"),
        ({"messages": CAPITAL, "temperature": "hot"}, "temperature", "must be a number"),
        ({"messages": CAPITAL, "top_p": 0}, "top_p", "greater than 0"),
        ({"messages": CAPITAL, "top_p": 1.5}, "top_p", "at most 1"),
        ({"messages": CAPITAL, "system": 3}, "system", "system must be a string"),
    ],
)
def test_bad_requests_get_a_clear_message_naming_the_field(body, field, needle):
    with pytest.raises(InvalidRequest) as err:
        parse_request(body)
    assert err.value.field == field and needle in err.value.message


# --- the worker's model cache ------------------------------------------------------------------------------------


class _Memory:
    """A pretend machine: loading a model takes 1500 MiB, and the memory comes back when the model is freed."""

    def __init__(self, available: float) -> None:
        self.available = available
        self.rss = 300.0

    def load(self, ref: ModelRef) -> LoadedModel:
        memory = self

        class Weights:
            def __init__(self) -> None:
                memory.available -= 1500
                memory.rss += 1500

            def __del__(self) -> None:
                memory.available += 1500
                memory.rss -= 1500

        return LoadedModel(ref=ref, model=Weights(), tokenizer=None, load_s=0.0)


def _ref(key: str) -> ModelRef:
    return ModelRef(key=key, base_path=f"/models/{key}")


def test_cache_keeps_at_most_max_models_and_evicts_the_least_recently_used():
    mem = _Memory(available=100_000)
    cache = ModelCache(
        max_models=2, min_free_mb=0, loader=mem.load, available=lambda: mem.available, rss=lambda: mem.rss
    )
    a = cache.get(_ref("a"))
    cache.get(_ref("b"))
    assert cache.get(_ref("a")) is a  # a hit: no reload, and `a` becomes the most recently used
    cache.get(_ref("c"))
    assert cache.keys() == ["a", "c"] and cache.evictions == ["b"]
    assert mem.rss == pytest.approx(300 + 2 * 1500)  # b's memory came back


def test_cache_evicts_when_available_memory_or_rss_crosses_the_limit():
    mem = _Memory(available=5000)
    cache = ModelCache(
        max_models=10,
        min_free_mb=1500,
        max_rss_mb=0,
        loader=mem.load,
        available=lambda: mem.available,
        rss=lambda: mem.rss,
    )
    cache.get(_ref("a"))
    cache.get(_ref("b"))  # 2000 MiB left: fine
    cache.get(_ref("c"))  # 500 MiB left after loading: `a` goes, then memory is fine again
    assert cache.keys() == ["b", "c"] and cache.evictions == ["a"]
    assert mem.available == pytest.approx(2000)

    cache.min_free_mb, cache.max_rss_mb = 0, 2000  # an RSS ceiling instead: only the model in use may stay
    cache.get(_ref("d"))
    assert cache.keys() == ["d"] and mem.rss == pytest.approx(1800)

    cache.max_rss_mb = 1000  # even over the ceiling, the model being used is kept
    assert cache.trim(keep="d") == [] and cache.keys() == ["d"]


def test_cache_really_gives_memory_back_after_evicting_a_real_model():
    """Two real copies of the embedded model under an RSS ceiling that fits one: the worker's trim after a
    generation drops the older copy and RSS really falls back (gc + malloc_trim after the eviction)."""
    from training.engine.embedded import embedded_model_path

    path = embedded_model_path()
    one_token = parse_request({"messages": CAPITAL, "max_new_tokens": 1, "temperature": 0})
    cache = ModelCache(max_models=5, min_free_mb=0, max_rss_mb=0)
    before = inference.rss_mb()
    inference.Generation(cache.get(ModelRef(key="one", base_path=path)), one_token).run()
    with_one = inference.rss_mb()
    assert with_one - before > 300  # the weights are 538 MB in float32 (memory-mapped, resident once used)
    cache.max_rss_mb = with_one + 250  # room for one copy, not two
    inference.Generation(cache.get(ModelRef(key="two", base_path=path)), one_token).run()
    with_two = inference.rss_mb()
    assert with_two > cache.max_rss_mb and cache.keys() == ["one", "two"]
    assert cache.trim(keep="two") == ["one"]  # what the worker does after every generation
    assert cache.keys() == ["two"] and inference.rss_mb() < with_two - 300
    cache.clear()


# --- through the platform: REST and websocket with a real inference worker ---------------------------------------


@pytest.fixture(scope="module")
def inference_worker(test_db_name, tmp_path_factory):
    """A real `celery worker` on the `inference` queue (test database and Redis numbers)."""
    from tests.processes import server_env, start_celery_worker, stop

    log = tmp_path_factory.mktemp("inference") / "worker.log"
    proc, node = start_celery_worker(server_env(test_db_name), log, queues="inference")
    yield node
    stop(proc)


def _session_cookie(user) -> str:
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _ws_url(daphne_url: str, target: Any) -> str:
    return f"{daphne_url.replace('http://', 'ws://')}/ws/models/{target}/generate/"


async def _chat(
    url: str, cookie: str, origin: str, *bodies: dict[str, Any], stop_after: int | None = None, timeout: float = 120
) -> list[list[dict[str, Any]]]:
    """Send each body on one socket and collect its events up to `done` or `error`."""
    conversations = []
    async with websockets.connect(url, additional_headers={"Cookie": cookie}, origin=origin) as ws:
        for body in bodies:
            sent = time.monotonic()
            await ws.send(body if isinstance(body, str) else json.dumps(body))
            events: list[dict[str, Any]] = []
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), timeout))
                event["_t"] = time.monotonic() - sent  # seconds since the request was sent (for the timings)
                events.append(event)
                if stop_after is not None and sum(e["type"] == "token" for e in events) == stop_after:
                    await ws.send(json.dumps({"type": "stop"}))
                if event["type"] in ("done", "error"):
                    break
            conversations.append(events)
    return conversations


def _tokens(events: list[dict[str, Any]], source: str | None = None) -> list[str]:
    return [e["text"] for e in events if e["type"] == "token" and (source is None or e["source"] == source)]


@pytest.mark.django_db(transaction=True)
def test_rest_generate_answers_with_the_embedded_base_model(auth_client, inference_worker):
    from models_app.models import BaseModel

    base = BaseModel.objects.ensure_embedded()
    r = auth_client.post(
        f"/api/models/base/{base.pk}/generate/",
        {"messages": CAPITAL, "temperature": 0, "max_new_tokens": 16},
        format="json",
    )
    assert r.status_code == 200, r.content
    body = r.json()
    assert "Paris" in body["text"], body
    assert 0 < body["tokens"] <= 16 and body["duration_s"] > 0 and body["prompt_tokens"] > 5


@pytest.mark.django_db(transaction=True)
def test_rest_generate_answers_with_a_fine_tuned_model_and_side_by_side_with_its_base(
    auth_client, user, make_finetuned, inference_worker
):
    from models_app.models import BaseModel

    model = make_finetuned(user)
    body = {
        "messages": [{"role": "user", "content": "Give three tips for staying healthy."}],
        "temperature": 0,
        "max_new_tokens": 14,
        "system": "You are a helpful assistant.",
        "compare_with_base": True,
    }
    r = auth_client.post(f"/api/models/{model.pk}/generate/", body, format="json")
    assert r.status_code == 200, r.content
    answer = r.json()
    words = answer["text"].split()
    assert len(words) >= 5 and sum(w.isalpha() for w in words) >= 3, answer  # real words, not noise
    assert 0 < answer["tokens"] <= 14
    assert answer["base"]["text"] and answer["base"]["tokens"] > 0
    # The side-by-side base answer is the base model's own (adapter switched off): same as asking the base directly.
    base = BaseModel.objects.ensure_embedded()
    direct = auth_client.post(
        f"/api/models/base/{base.pk}/generate/",
        {k: v for k, v in body.items() if k != "compare_with_base"},
        format="json",
    )
    assert direct.status_code == 200 and direct.json()["text"] == answer["base"]["text"]


@pytest.mark.django_db(transaction=True)
def test_rest_generate_through_daphne_while_a_socket_streams(user, make_finetuned, daphne_url, inference_worker):
    """In production the POST waits inside daphne, on the same event loop and channel layer as the sockets."""
    import requests

    from models_app.models import BaseModel

    base = BaseModel.objects.ensure_embedded()
    model = make_finetuned(user)
    session = requests.Session()
    cookie = _session_cookie(user)
    name, value = cookie.split("=", 1)
    session.cookies.set(name, value)
    session.get(f"{daphne_url}/api/auth/csrf/").raise_for_status()
    headers = {"X-CSRFToken": session.cookies["csrftoken"], "Referer": daphne_url + "/"}

    async def both() -> tuple[Any, list[list[dict[str, Any]]]]:
        post = asyncio.to_thread(
            session.post,
            f"{daphne_url}/api/models/base/{base.pk}/generate/",
            json={"messages": CAPITAL, "temperature": 0, "max_new_tokens": 8},
            headers=headers,
        )
        ws = _chat(
            _ws_url(daphne_url, model.pk),
            cookie,
            daphne_url,
            {"messages": CAPITAL, "temperature": 0, "max_new_tokens": 8},
        )
        return await asyncio.gather(post, ws)

    response, (events,) = run_async(both())
    assert response.status_code == 200, response.text
    assert "Paris" in response.json()["text"]
    assert events[-1]["type"] == "done" and events[-1]["tokens"] > 0


@pytest.mark.django_db
def test_rest_generate_rejects_bad_input_before_queueing(auth_client, user, make_finetuned):
    from models_app.models import BaseModel

    model = make_finetuned(user)
    r = auth_client.post(f"/api/models/{model.pk}/generate/", {"messages": CAPITAL, "top_p": 0}, format="json")
    assert r.status_code == 400 and "top_p" in r.json()["detail"] and "top_p" in r.json()["errors"]
    base = BaseModel.objects.ensure_embedded()
    r = auth_client.post(
        f"/api/models/base/{base.pk}/generate/", {"messages": CAPITAL, "compare_with_base": True}, format="json"
    )
    assert r.status_code == 400 and "needs a fine-tuned model" in r.json()["detail"]
    assert auth_client.post("/api/models/999999/generate/", {"messages": CAPITAL}, format="json").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_websocket_streams_tokens_then_done_from_the_worker(user, make_finetuned, daphne_url, inference_worker):
    model = make_finetuned(user)
    cookie = _session_cookie(user)
    ask = {
        "messages": [{"role": "user", "content": "Describe the ocean in two sentences."}],
        "temperature": 0,
        "max_new_tokens": 16,
    }
    bad = {"messages": [{"role": "user", "content": "hi"}], "temperature": 5}
    invalid, not_json, events = run_async(
        _chat(_ws_url(daphne_url, model.pk), cookie, daphne_url, bad, "not json", ask)
    )
    assert [{k: v for k, v in e.items() if k != "_t"} for e in invalid] == [
        {"type": "error", "detail": "temperature must be between 0 and 2 (0 = greedy).", "field": "temperature"}
    ]
    assert not_json[0]["type"] == "error" and "JSON" in not_json[0]["detail"]

    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["queued", "start", "source"] and kinds[-1] == "done", kinds
    tokens = _tokens(events, "model")
    assert len(tokens) >= 3, events  # streamed piece by piece, not in one message
    done = events[-1]
    assert done["text"] == "".join(tokens).strip() and done["text"]
    assert 0 < done["tokens"] <= 16 and done["duration_s"] > 0 and done["stopped"] is False
    assert len({e["request_id"] for e in events}) == 1

    # Timings as the browser sees them (written for the record; this 2-core machine is shared while tests run).
    first = next(e["_t"] for e in events if e["type"] == "token")
    start = next(e["_t"] for e in events if e["type"] == "start")
    timings = {
        "queued_to_start_s": round(start, 3),
        "time_to_first_token_s": round(first, 3),
        "total_s": round(done["_t"], 3),
        "tokens": done["tokens"],
        "pieces": len(tokens),
        "client_tokens_per_s": round(done["tokens"] / max(done["_t"] - start, 1e-6), 2),
        "worker_duration_s": done["results"]["model"]["duration_s"],
    }
    out = ARTIFACTS / "models"
    out.mkdir(parents=True, exist_ok=True)
    (out / "playground-timings.json").write_text(json.dumps(timings, indent=2))


@pytest.mark.django_db(transaction=True)
def test_websocket_side_by_side_on_a_base_target_and_stop(user, make_finetuned, daphne_url, inference_worker):
    from models_app.models import BaseModel

    model = make_finetuned(user)
    base = BaseModel.objects.ensure_embedded()
    cookie = _session_cookie(user)
    compare = {"messages": CAPITAL, "temperature": 0, "max_new_tokens": 12, "compare_with_base": True}
    (events,) = run_async(_chat(_ws_url(daphne_url, model.pk), cookie, daphne_url, compare))
    sources = [e["source"] for e in events if e["type"] == "token"]
    assert sources and set(sources) == {"model", "base"}
    assert sources == sorted(sources, key=lambda s: s != "model")  # the fine-tuned answer first, then the base one
    assert events[-1]["type"] == "done" and set(events[-1]["results"]) == {"model", "base"}
    assert "Paris" in events[-1]["results"]["base"]["text"]

    story = {
        "messages": [{"role": "user", "content": "Write a long story about a dragon and a knight."}],
        "temperature": 0.8,
        "max_new_tokens": 400,
    }
    (stopped,) = run_async(_chat(_ws_url(daphne_url, f"base-{base.pk}"), cookie, daphne_url, story, stop_after=2))
    assert stopped[-1]["type"] == "done" and stopped[-1]["stopped"] is True
    assert stopped[-1]["tokens"] < 400 and all(e.get("source") == "base" for e in stopped if e["type"] == "token")


@pytest.mark.django_db(transaction=True)
def test_websocket_refuses_other_users_anonymous_and_foreign_origins(user, other_user, make_finetuned, daphne_url):
    model = make_finetuned(user)
    mine, theirs = _session_cookie(user), _session_cookie(other_user)

    async def status_of(target: Any, cookie: str | None, origin: str) -> int | None:
        headers = {"Cookie": cookie} if cookie else {}
        try:
            async with websockets.connect(_ws_url(daphne_url, target), additional_headers=headers, origin=origin):
                return None
        except websockets.exceptions.InvalidStatus as exc:
            return exc.response.status_code

    assert run_async(status_of(model.pk, theirs, daphne_url)) == 403  # another user's model: refused
    assert run_async(status_of(model.pk, None, daphne_url)) == 403  # anonymous
    assert run_async(status_of(model.pk, mine, "http://evil.example.com")) == 403  # foreign Origin
    assert run_async(status_of(999999, mine, daphne_url)) == 403  # unknown model
    assert run_async(status_of("nope", mine, daphne_url)) == 403
    assert run_async(status_of(model.pk, mine, daphne_url)) is None  # the owner, same origin: accepted


@pytest.mark.django_db(transaction=True)
def test_websocket_reports_a_missing_inference_worker(user, make_finetuned, settings, monkeypatch):
    """No worker takes the task (its enqueue is dropped here): after PLAYGROUND_TIMEOUT_S without news the socket
    gets a clear error instead of waiting forever, and the request is cancelled."""
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.db import connections

    from finetune.asgi import application
    from models_app import playground

    settings.PLAYGROUND_TIMEOUT_S = 1
    monkeypatch.setattr(playground, "_enqueue", lambda job: None)
    model = make_finetuned(user)
    cookie = _session_cookie(user).encode()

    async def scenario() -> list[dict[str, Any]]:
        comm = WebsocketCommunicator(
            application,
            f"/ws/models/{model.pk}/generate/",
            headers=[(b"cookie", cookie), (b"origin", b"http://localhost")],
        )
        assert (await comm.connect())[0]
        await comm.send_json_to({"messages": CAPITAL})
        events = [await comm.receive_json_from(timeout=5), await comm.receive_json_from(timeout=5)]
        await comm.disconnect()
        await database_sync_to_async(connections.close_all)()
        return events

    queued, error = run_async(scenario())
    assert queued["type"] == "queued" and error["type"] == "error"
    assert "No answer from the inference worker for 1 s" in error["detail"]
    assert playground.is_cancelled(queued["request_id"])


def test_worker_log_has_no_tracebacks(inference_worker, tmp_path_factory):
    """Last: nothing above made the inference worker log a traceback."""
    root = tmp_path_factory.getbasetemp()
    logs = [p for p in root.glob("inference*/worker.log")]
    assert logs
    text = "".join(p.read_text(errors="replace") for p in logs)
    assert "Traceback" not in text, text[-3000:]
    assert os.path.getsize(logs[0]) > 0
