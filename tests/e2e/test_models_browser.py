"""In Chromium against daphne and a real Celery worker (queues `default` and `inference`): open a fine-tuned model,
chat with it in the playground and watch the tokens stream in (alone, then side by side with its base), press Push to
Hugging Face (the fake Hub first answers 429, the dialog offers Retry, the retry lands the files on the fake Hub) and
Import to Ollama (the fake Ollama runs the uploaded GGUF in llama.cpp), then see the verified GGUF export, the compare
view and the base-model catalogue. Screenshots in test-artifacts/models/."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

HF_TOKEN = "hf_validTokenForAlice1234"  # the fake Hub knows it as user "alice-hf", with write access


@pytest.fixture(scope="module")
def fake_ollama_server(tmp_path_factory):
    from tests.fakes.ollama import FakeOllama

    server = FakeOllama(tmp_path_factory.mktemp("browser-ollama")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def models_servers(test_db_name, fake_hub_server, fake_ollama_server, tmp_path_factory):
    """Our own daphne and worker: the Ollama host is read by the web process when an import is requested, so both
    get OLLAMA_HOST pointing at the fake (the session's daphne does not know it)."""
    from tests.processes import server_env, start_celery_worker, start_daphne, stop

    # One golden prompt of 16 tokens keeps the GGUF verification to seconds on 2 cores (as tests/models_app does).
    env = server_env(
        test_db_name,
        HF_ENDPOINT=fake_hub_server.url,
        OLLAMA_HOST=fake_ollama_server.url,
        EXPORT_VERIFY_PROMPTS="What is the capital of France?",
        EXPORT_VERIFY_MAX_NEW_TOKENS="16",
    )
    logs = tmp_path_factory.mktemp("models-browser")
    daphne, port = start_daphne(env, logs / "daphne.log")
    worker, _node = start_celery_worker(env, logs / "worker.log", queues="default,inference")
    yield f"http://127.0.0.1:{port}"
    stop(worker)
    stop(daphne)


def _finished_job(owner, dataset, *, name: str, lr: float, losses: list[float], eval_losses: dict[int, float]):
    """A succeeded training job with its logged loss curve (what a real run leaves behind), for the compare view."""
    from django.utils import timezone

    from models_app.models import BaseModel
    from training.models import MetricPoint, TrainingJob

    job = TrainingJob.objects.create(
        owner=owner,
        name=name,
        base_model=BaseModel.objects.ensure_embedded(),
        dataset=dataset,
        method="sft",
        weights="lora",
        status="succeeded",
        hyperparameters={"max_steps": len(losses), "learning_rate": lr},
        current_step=len(losses),
        total_steps=len(losses),
        progress=1.0,
        finished=timezone.now(),
    )
    points = [
        MetricPoint(job=job, seq=i + 1, kind="metric", step=i + 1, loss=loss, learning_rate=lr, time=timezone.now())
        for i, loss in enumerate(losses)
    ]
    points += [
        MetricPoint(job=job, seq=len(losses) + n + 1, kind="eval", step=step, eval_loss=value, time=timezone.now())
        for n, (step, value) in enumerate(eval_losses.items())
    ]
    MetricPoint.objects.bulk_create(points)
    TrainingJob.objects.filter(pk=job.pk).update(metric_seq=len(points))
    return job


def _sign_up(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/signup")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_label("Password", exact=True).fill("Fine-Tuned-Models-77")
    page.get_by_label("Confirm password").fill("Fine-Tuned-Models-77")
    page.get_by_role("button", name="Sign up").click()
    expect(page.get_by_test_id("user-menu")).to_contain_text(username)


# Records every distinct length the streamed answer text goes through, so the test can tell tokens arrived one by one
# (a REST answer would jump from empty to whole).
WATCH_STREAM = """() => {
  window.__answerLengths = {};
  const seen = window.__answerLengths;
  const record = () => document.querySelectorAll('[data-testid=assistant-message]').forEach((el, i) => {
    const key = i + ':' + el.dataset.side;
    const n = (el.querySelector('.md-msg__text')?.textContent || '').length;
    (seen[key] = seen[key] || []).includes(n) || seen[key].push(n);
  });
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def test_model_page_playground_push_and_ollama_import(
    page, models_servers, fake_hub, fake_ollama_server, make_finetuned, artifacts_dir, tmp_path
):  # noqa: F811
    base_url = models_servers
    shots = artifacts_dir / "models"
    shots.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / name), full_page=True)

    _sign_up(page, base_url, "mona")
    from accounts import services as accounts
    from accounts.models import User

    mona = User.objects.get(username="mona")
    accounts.save_hf_token(mona, token=HF_TOKEN)  # validated against the fake Hub (whoami)
    from datasets_app.models import Dataset

    data = Dataset.objects.create(owner=mona, name="tiny alpaca", status="ready", format="alpaca", row_count=8)
    job1 = _finished_job(
        mona, data, name="run 1", lr=1e-3, losses=[2.5, 2.31, 2.2, 2.04, 1.98, 1.9], eval_losses={3: 2.3, 6: 2.1}
    )
    job2 = _finished_job(
        mona, data, name="run 2", lr=2e-3, losses=[2.5, 2.2, 1.98, 1.85, 1.76, 1.7], eval_losses={3: 2.15, 6: 1.95}
    )
    v1 = make_finetuned(
        mona,
        name="tiny-alpaca",
        job=job1,
        hyperparameters={"max_steps": 6, "learning_rate": 1e-3},
        metrics={"train_loss_first": 2.5, "train_loss_last": 1.9, "eval_loss_after": 2.1},
    )
    v2 = make_finetuned(
        mona,
        name="tiny-alpaca",
        job=job2,
        hyperparameters={"max_steps": 6, "learning_rate": 2e-3},
        metrics={"train_loss_first": 2.5, "train_loss_last": 1.7, "eval_loss_after": 1.95},
        tag="candidate",
    )

    # --- the models list and the model page
    page.get_by_role("link", name="Models", exact=True).click()
    rows = page.get_by_test_id("model-row")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("v2")
    expect(rows.first.get_by_test_id("latest-badge")).to_be_visible()
    expect(rows.nth(1).get_by_test_id("latest-badge")).to_have_count(0)
    shot("01-models-list.png")
    rows.first.get_by_role("link", name="tiny-alpaca").click()
    expect(page).to_have_url(re.compile(rf"/models/{v2.pk}$"))
    expect(page.get_by_test_id("model-name")).to_have_text("tiny-alpaca")
    expect(page.get_by_test_id("version-row")).to_have_count(2)
    expect(page.get_by_test_id("loss-chart")).to_have_attribute("data-points", "6")
    # The model page shows how it was trained: its job's reproducibility record (config with the learning rate).
    repro = page.get_by_test_id("reproducibility-card")
    repro.get_by_text("Full configuration").click()
    expect(repro.get_by_test_id("reproducibility-config")).to_contain_text('"learning_rate"')
    page.get_by_label("Notes").fill("Higher learning rate: lower loss after 6 steps.")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_test_id("tag-notes-saved")).to_be_visible()
    v2.refresh_from_db()
    assert v2.notes == "Higher learning rate: lower loss after 6 steps." and v2.tag == "candidate"
    page.wait_for_timeout(300)
    shot("02-model-detail.png")

    # --- the playground: tokens stream in over the websocket
    page.get_by_test_id("open-playground").click()
    expect(page).to_have_url(re.compile(rf"/playground\?model={v2.pk}"))
    expect(page.get_by_test_id("playground-model")).to_have_value(f"m:{v2.pk}")
    page.get_by_label("Temperature value").fill("0")
    page.locator("#playground-max-new").fill("40")
    page.evaluate(WATCH_STREAM)
    page.get_by_test_id("chat-input").fill("What is the capital of France?")
    page.get_by_test_id("send-button").click()
    answer = page.get_by_test_id("assistant-message").first
    expect(answer).to_have_attribute("data-streaming", "true")
    expect(answer).to_have_attribute("data-streaming", "false", timeout=180000)
    expect(page.get_by_test_id("generate-error")).to_have_count(0)
    tokens = int(answer.get_attribute("data-tokens"))
    assert tokens >= 3, tokens
    lengths = page.evaluate("window.__answerLengths['0:model']")
    assert len([n for n in lengths if n > 0]) >= 3, f"the answer did not arrive token by token: {lengths}"
    assert answer.inner_text().strip()
    shot("03-playground.png")

    # Side by side, in a new chat: the same socket streams the fine-tuned answer, then the base model's (the same
    # weights with the adapter switched off), which differs.
    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_test_id("assistant-message")).to_have_count(0)
    page.get_by_test_id("side-by-side").check()
    page.get_by_test_id("chat-input").fill("What is the capital of France?")
    page.get_by_test_id("send-button").click()
    pair = page.locator(".md-answers").last
    expect(pair.locator("[data-side=base]")).to_have_attribute("data-streaming", "false", timeout=180000)
    expect(page.get_by_test_id("generate-error")).to_have_count(0)
    texts = {}
    for side in ("model", "base"):
        bubble = pair.locator(f"[data-side={side}]")
        assert int(bubble.get_attribute("data-tokens")) >= 1, side
        texts[side] = bubble.locator(".md-msg__text").inner_text().strip()
    assert texts["model"] and texts["base"] and texts["model"] != texts["base"], texts
    shot("04-playground-side-by-side.png")

    # --- Push to Hugging Face: a 429 first (clear error, Retry), then the retry succeeds
    fake_hub.fail(
        r"/api/repos/create",
        429,
        method="POST",
        times=1,
        retry_after=1,
        message="You are sending too many requests. Slow down.",
    )
    try:
        page.goto(f"{base_url}/models/{v2.pk}")
        page.get_by_test_id("push-hub-button").click()
        dialog = page.get_by_test_id("push-dialog")
        expect(dialog.get_by_label("Repository name")).to_have_value("tiny-alpaca")
        dialog.get_by_label("Repository name").fill("tiny-alpaca-demo")
        expect(dialog).to_contain_text("alice-hf/tiny-alpaca-demo")
        expect(dialog.get_by_test_id("push-private")).to_be_checked()
        shot("05-push-dialog.png")
        dialog.get_by_test_id("push-submit").click()
        expect(dialog.get_by_test_id("push-error")).to_be_visible(timeout=120000)
        expect(dialog.get_by_test_id("push-error")).to_contain_text(re.compile(r"429|rate|too many", re.I))
        shot("06-push-429-retry.png")
        dialog.get_by_test_id("push-retry").click()
    finally:
        fake_hub.clear_failures()
    expect(dialog.get_by_test_id("push-result")).to_be_visible(timeout=180000)
    url = dialog.get_by_test_id("push-repo-url")
    expect(url).to_contain_text("alice-hf/tiny-alpaca-demo")
    shot("07-push-done.png")
    repo = fake_hub.repo_dir("alice-hf/tiny-alpaca-demo")
    pushed = {p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file()}
    assert "README.md" in pushed and any(p.endswith(".safetensors") for p in pushed), pushed
    assert fake_hub.repos["alice-hf/tiny-alpaca-demo"].private
    dialog.get_by_role("button", name="Close", exact=True).click()

    # --- Import to Ollama: the name is checked as it is typed, then the import runs against the fake Ollama
    page.get_by_test_id("ollama-button").click()
    dialog = page.get_by_test_id("ollama-dialog")
    name = dialog.get_by_label("Ollama model name")
    name.fill("Tiny Alpaca")
    expect(dialog.get_by_test_id("field-error")).to_contain_text("lowercase")
    expect(dialog.get_by_test_id("ollama-submit")).to_be_disabled()
    name.fill("someone/tiny-alpaca:v2")  # another user's namespace
    expect(dialog.get_by_test_id("field-error")).to_contain_text('your namespace "mona/"')
    name.fill("tiny-alpaca:v2")
    expect(dialog.get_by_test_id("field-error")).to_have_count(0)
    expect(dialog.get_by_test_id("ollama-run-preview")).to_have_text("ollama run mona/tiny-alpaca:v2")
    dialog.get_by_test_id("ollama-quantization").select_option("q4_k_m")  # the size people run locally
    dialog.get_by_test_id("ollama-submit").click()
    expect(dialog.get_by_test_id("ollama-progress").or_(dialog.get_by_test_id("ollama-result"))).to_be_visible()
    shot("08-ollama-running.png")
    expect(dialog.get_by_test_id("ollama-result")).to_be_visible(timeout=420000)
    expect(dialog.get_by_test_id("ollama-run-command")).to_have_text("ollama run mona/tiny-alpaca:v2")
    shot("09-ollama-done.png")
    dialog.get_by_role("button", name="Close", exact=True).click()

    from models_app.models import HubPush, ModelExport, OllamaImport

    imported = OllamaImport.objects.get(model=v2)
    assert imported.status == "succeeded" and imported.verification["golden"]["match"]
    assert imported.quantization == "q4_k_m"
    assert HubPush.objects.filter(model=v2, status="succeeded").exists()

    # The import exported a verified GGUF: the Export card shows it with its llama.cpp verification.
    gguf = ModelExport.objects.get(model=v2, format="gguf")
    assert gguf.status == "succeeded" and gguf.quantization == "q4_k_m" and gguf.file_key.endswith("-Q4_K_M.gguf")
    row = page.locator("[data-testid=export-row][data-format=gguf][data-status=succeeded]")
    expect(row).to_be_visible(timeout=20000)
    expect(row.get_by_test_id("export-verification")).to_have_attribute("data-passed", "true")
    expect(page.get_by_test_id("push-history-row")).not_to_have_count(0)
    expect(page.get_by_test_id("ollama-history-row")).to_have_count(1)
    page.wait_for_timeout(300)
    shot("10-model-after-sharing.png")

    # An adapter export from its button: progress, then a Download through a short-lived signed link.
    page.get_by_test_id("export-adapter").click()
    adapter = page.locator("[data-testid=export-row][data-format=adapter]")
    expect(adapter).to_have_attribute("data-status", "succeeded", timeout=120000)
    with page.expect_download() as downloaded:
        adapter.get_by_test_id("export-download").click()
    file = downloaded.value
    assert file.suggested_filename == "tiny-alpaca-v2-adapter.zip"
    import zipfile

    with zipfile.ZipFile(file.path()) as archive:
        names = archive.namelist()
    assert any(n.endswith("adapter_config.json") for n in names) and any(n.endswith(".safetensors") for n in names)
    shot("10b-adapter-exported.png")

    # --- compare the two versions, and the base-model catalogue with its fit estimate
    page.goto(f"{base_url}/models/compare?a={v1.pk}&b={v2.pk}")
    expect(page.get_by_test_id("hp-diff-row")).to_have_count(1)
    expect(page.get_by_test_id("hp-diff")).to_contain_text("learning_rate")
    chart = page.get_by_test_id("compare-loss-chart")
    expect(chart).to_have_attribute("data-points-a", "6")
    expect(chart).to_have_attribute("data-points-b", "6")
    expect(page.get_by_test_id("compare-facts")).to_contain_text("tiny alpaca v1")
    page.wait_for_timeout(300)
    shot("11-compare.png")
    page.goto(f"{base_url}/models/base")
    expect(page.get_by_test_id("base-row").first).to_contain_text("SmolLM2-135M-Instruct")
    expect(page.get_by_test_id("fit-row")).to_have_count(3)
    expect(page.locator("[data-testid=fit-row][data-method=lora]")).to_have_attribute(
        "data-fits", re.compile("true|false"), timeout=20000
    )
    shot("12-base-models.png")

    # --- Hub search, model info and a download into the shared cache, with its progress in the catalogue
    from django.conf import settings

    from tests.fakes.hub import tiny_model_files

    repo_id = f"tiny-org/tiny-chat-{time.time_ns() % 10**9}"
    files, _params = tiny_model_files()
    fake_hub.add_model(repo_id, files, downloads=500, likes=7)
    try:
        page.get_by_test_id("hub-search").fill("tiny-chat")
        page.get_by_role("button", name="Search", exact=True).click()
        page.get_by_test_id("hub-hit").filter(has_text=repo_id).click()
        info = page.get_by_test_id("hub-info")
        expect(info).to_contain_text("LlamaForCausalLM")
        expect(info.get_by_test_id("hub-download")).to_be_enabled()
        shot("13-hub-info.png")
        fake_hub.throttle_bytes_per_s = 3_000_000  # ~9 s for the 27 MB of weights: the progress bar has time to move
        info.get_by_test_id("hub-download").click()
        row = page.locator(f"[data-testid=base-row][data-repo='{repo_id}']")
        expect(row).to_have_attribute("data-status", "downloading", timeout=20000)
        # Progress arrives over /ws/notifications/ while the worker downloads.
        page.wait_for_function(
            """(repo) => Number(document.querySelector(`[data-repo="${repo}"] [data-testid=download-progress]`)
                 ?.dataset.progress || 0) > 0""",
            arg=repo_id,
            timeout=60000,
        )
        shot("14-hub-downloading.png")
        expect(row).to_have_attribute("data-status", "available", timeout=180000)
        expect(info.get_by_test_id("hub-info-state")).to_have_attribute("data-status", "available")
        shot("15-hub-downloaded.png")
    finally:
        fake_hub.throttle_bytes_per_s = None
        shutil.rmtree(
            Path(settings.FINETUNE_MODEL_CACHE) / f"models--{repo_id.replace('/', '--')}", ignore_errors=True
        )

    # --- delete a version, after confirming
    from models_app.models import FineTunedModel

    page.goto(f"{base_url}/models/{v1.pk}")
    page.get_by_test_id("delete-model").click()
    expect(page.get_by_test_id("delete-dialog")).to_contain_text("Delete tiny-alpaca v1?")
    shot("16-delete-confirm.png")
    page.get_by_test_id("delete-confirm").click()
    expect(page).to_have_url(re.compile(r"/models$"))
    expect(page.get_by_test_id("model-row")).to_have_count(1)
    assert not FineTunedModel.objects.filter(pk=v1.pk).exists()


# What the generate socket sends for an answer that calls a tool (the server's own message shapes: tokens, then
# `done` with the parsed calls in `results`; ``models_app.playground`` and its tests produce them from a real model).
TOOL_ANSWER = [
    "Let me check. ",
    '<tool_call>\n{"name": "get_weather", ',
    '"arguments": {"city": "Paris"}}\n</tool_call>',
]
TOOL_CALLS = [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]


def test_playground_shows_an_answers_tool_calls_as_calls(page, models_servers, make_finetuned, artifacts_dir):
    """With a tools list in the settings, the request carries the tools and an answer's `<tool_call>` blocks show as
    call cards (name and arguments), not as markup in the text; the user sends the tool's result back and the model
    answers from it. The socket is answered by the page's route with the
    messages the server sends, so the model's choice to call a tool does not decide the test."""
    import json

    base_url = models_servers
    _sign_up(page, base_url, "tess")
    from accounts.models import User

    model = make_finetuned(User.objects.get(username="tess"), name="tool-caller")
    sent: list[dict] = []

    def answer(ws) -> None:
        def on_message(message) -> None:
            body = json.loads(message)
            sent.append(body)
            after_tool = body["messages"][-1]["role"] == "tool"
            pieces = ["It is 18 °C ", "in Paris."] if after_tool else TOOL_ANSWER
            ws.send(json.dumps({"type": "start"}))
            for piece in pieces:
                ws.send(json.dumps({"type": "token", "text": piece, "source": "model"}))
            text = "".join(pieces)
            result = {"text": text, "tokens": len(pieces), "prompt_tokens": 90, "duration_s": 0.5}
            if not after_tool:
                result["tool_calls"] = TOOL_CALLS
            ws.send(json.dumps({"type": "done", "tokens": len(pieces), "text": text, "results": {"model": result}}))

        ws.on_message(on_message)

    page.route_web_socket(re.compile(r"/ws/models/\d+/generate/$"), answer)
    page.goto(f"{base_url}/playground?model={model.pk}")
    expect(page.get_by_test_id("playground-model")).to_have_value(f"m:{model.pk}")
    tools = '[{"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]'
    page.get_by_test_id("playground-tools").fill(tools)
    page.get_by_test_id("chat-input").fill("What's the weather in Paris?")
    page.get_by_test_id("send-button").click()
    reply = page.get_by_test_id("assistant-message").first
    expect(reply).to_have_attribute("data-streaming", "false")
    call = reply.get_by_test_id("tool-call")
    expect(call).to_have_count(1)
    expect(call).to_have_attribute("data-name", "get_weather")
    assert json.loads(call.get_by_test_id("tool-call-arguments").inner_text()) == {"city": "Paris"}
    expect(reply.locator(".md-msg__text")).to_have_text("Let me check.")
    assert sent and sent[0]["tools"][0]["name"] == "get_weather"
    assert sent[0]["messages"][-1] == {"role": "user", "content": "What's the weather in Paris?"}
    shots = artifacts_dir / "models"
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "17-playground-tool-call.png"), full_page=True)

    # Playing the tool: its result goes back as a `tool` turn after the call, with the tools, and the model goes on.
    expect(page.get_by_test_id("tool-result-form")).to_contain_text("Result of get_weather")
    page.get_by_test_id("tool-result-input").fill('{"temperature": 18}')
    page.get_by_test_id("tool-result-send").click()
    expect(page.get_by_test_id("tool-message")).to_contain_text('{"temperature": 18}')
    final = page.get_by_test_id("assistant-message").nth(1)
    expect(final).to_have_attribute("data-streaming", "false")
    expect(final.locator(".md-msg__text")).to_have_text("It is 18 °C in Paris.")
    expect(page.get_by_test_id("tool-result-form")).to_have_count(0)  # the last answer called nothing
    assert len(sent) == 2 and sent[1]["tools"] == sent[0]["tools"]
    assert sent[1]["messages"][-3:] == [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": "".join(TOOL_ANSWER)},  # the call as the model wrote it
        {"role": "tool", "content": '{"temperature": 18}'},
    ]
    page.screenshot(path=str(shots / "18-playground-tool-result.png"), full_page=True)
