"""Import to Ollama against the fake Ollama server (real HTTP, the uploaded GGUF answering through llama.cpp): the
Modelfile follows the model's chat template, the created model answers the golden prompt like the verified
llama.cpp run, bad names and unreachable or failing servers end in clear errors, and other users see nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from models_app import exports, modelfile, ollama
from models_app.models import ModelExport, OllamaImport
from tests.processes import free_port

GOLDEN_PROMPT = "What is the capital of France?"  # the one verification prompt of these tests (FAST_VERIFY)


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture(scope="module")
def imported(
    django_db_setup: Any,
    django_db_blocker: Any,
    committed_model: Any,
    trained_adapter_dir: Path,
    fake_ollama_server: Any,
) -> Any:
    """One real import (q8_0 GGUF export with llama.cpp verification, blob upload, create, golden prompt)."""
    fake_ollama_server.reset()
    with committed_model(trained_adapter_dir, OLLAMA_HOST=fake_ollama_server.url) as model:
        with pytest.MonkeyPatch.context() as mp, django_db_blocker.unblock():
            enqueued: list[tuple[int, str]] = []
            mp.setattr(ollama, "_enqueue", lambda import_id, token: enqueued.append((import_id, token)))
            started = time.perf_counter()
            row = ollama.request_ollama_import(model.owner, model.pk, "tiny-alpaca:v1")
            ollama.run_ollama_import(row.pk, row.run_token)
            row.refresh_from_db()
            seconds = time.perf_counter() - started
        golden = row.verification.get("golden", {})
        print(f"\nOllama import incl. q8_0 export: {seconds:.1f} s; golden answer {golden.get('ollama_answer')!r}")
        requests = list(fake_ollama_server.requests)
        yield {
            "import": row,
            "model": model,
            "owner": model.owner,
            "enqueued": enqueued,
            "requests": requests,
            "fake": fake_ollama_server,
        }


@pytest.mark.django_db
def test_import_uploads_creates_and_verifies_the_model(imported):
    row = OllamaImport.objects.get(pk=imported["import"].pk)
    assert imported["enqueued"] == [(row.pk, row.run_token)]
    assert row.status == "succeeded", row.error
    ns = ollama.namespace_of(imported["owner"])
    assert row.ollama_name == f"{ns}/tiny-alpaca:v1"  # in the owner's namespace
    assert row.run_command == f"ollama run {ns}/tiny-alpaca:v1" and row.progress == 1.0 and row.error == ""
    export = ModelExport.objects.get(pk=row.verification["export_id"])
    # The GGUF behind the import is a q8_0 export that passed the llama.cpp verification.
    assert export.format == "gguf" and export.quantization == "q8_0" and export.status == "succeeded"
    assert export.verification["passed"] and export.verification["quantization"] == "q8_0"
    calls = [(r["method"], r["path"]) for r in imported["requests"]]
    digest_path = f"/api/blobs/sha256:{export.sha256}"
    assert calls == [
        ("GET", "/api/tags"),
        ("HEAD", digest_path),
        ("POST", digest_path),
        ("POST", "/api/create"),
        ("POST", "/api/generate"),
        ("GET", "/api/tags"),
    ]
    assert row.verification["blob"] == "uploaded" and row.verification["listed"] is True
    assert row.verification["create"][-1] == "success"
    fake = imported["fake"]
    assert (fake.blobs / f"sha256-{export.sha256}").stat().st_size == export.size_bytes
    assert fake.models[row.ollama_name]["files"] == {"tiny-alpaca-v1-Q8_0.gguf": f"sha256:{export.sha256}"}


@pytest.mark.django_db
def test_modelfile_template_and_stops_come_from_the_chat_template(imported):
    row = OllamaImport.objects.get(pk=imported["import"].pk)
    tokenizer = ollama.load_tokenizer(row.model)
    stored = imported["fake"].models[row.ollama_name]
    assert row.verification["template"]["family"] == "chatml" and row.verification["template"]["check"]["match"]
    # What Ollama feeds the model is exactly what the HF chat template renders, with and without a system prompt.
    for messages, system in (
        ([{"role": "user", "content": "Hi there"}], None),
        ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}], "Be brief."),
    ):
        hf = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert imported["fake"].render(row.ollama_name, "Hi there", system=system) == hf
    assert stored["system"] == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert stored["parameters"]["stop"] == ["<|im_start|>", "<|im_end|>"]
    assert stored["parameters"]["num_ctx"] == 4096 and 0 < stored["parameters"]["temperature"] < 1
    text = row.modelfile
    assert text.startswith("FROM ./tiny-alpaca-v1-Q8_0.gguf\n")
    assert f'TEMPLATE """{stored["template"]}"""' in text
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text
    assert 'PARAMETER stop "<|im_start|>"\nPARAMETER stop "<|im_end|>"\n' in text
    assert "PARAMETER temperature 0.7\n" in text and "PARAMETER num_ctx 4096\n" in text


@pytest.mark.django_db
def test_the_created_model_answers_the_golden_prompt_like_llama_cpp(imported):
    row = OllamaImport.objects.get(pk=imported["import"].pk)
    export = ModelExport.objects.get(pk=row.verification["export_id"])
    golden = row.verification["golden"]
    reference = export.verification["checks"][0]
    assert golden["prompt"] == reference["prompt"] == GOLDEN_PROMPT
    assert golden["match"] and golden["ollama_answer"].strip()
    assert golden["ollama_answer"] == golden["llama_cpp_answer"] == reference["llama_answer"]
    # Asked again through the production client (greedy), the served model gives the same answer, with no chat
    # markers leaking (the stop tokens work).
    reply = ollama.OllamaClient(imported["fake"].url).generate(
        row.ollama_name, GOLDEN_PROMPT, options={"temperature": 0, "repeat_penalty": 1.0, "num_predict": 16}
    )
    assert reply["response"] == reference["llama_answer"] and "<|im" not in reply["response"]
    assert reply["done"] is True


@pytest.mark.django_db
def test_a_second_import_reuses_the_verified_export_and_the_blob(imported, fake_ollama):
    model = imported["model"]
    exports_before = ModelExport.objects.filter(model=model).count()
    row = ollama.request_ollama_import(imported["owner"], model.pk, "tiny-alpaca")
    ollama.run_ollama_import(row.pk, row.run_token)
    row.refresh_from_db()
    assert row.status == "succeeded", row.error
    assert row.run_command == f"ollama run {ollama.namespace_of(imported['owner'])}/tiny-alpaca"
    assert row.verification["export_id"] == imported["import"].verification["export_id"]
    assert row.verification["blob"] == "already on the server"
    assert ModelExport.objects.filter(model=model).count() == exports_before
    assert f"{row.ollama_name}:latest" in fake_ollama.models
    assert not [r for r in fake_ollama.requests if r["method"] == "POST" and r["path"].startswith("/api/blobs/")]
    # A repeated delivery of the task changes nothing.
    assert ollama.run_ollama_import(row.pk, row.run_token) is None


@pytest.mark.django_db
def test_a_template_that_does_not_match_the_model_is_caught_by_the_golden_prompt(imported, fake_ollama, monkeypatch):
    """A wrong TEMPLATE (Alpaca-style for a ChatML model) makes the served model answer differently: failed."""
    wrong = modelfile.ChatFormat("alpaca", modelfile.FAMILIES["alpaca"][0], "", ("### Instruction:",), {"match": True})
    monkeypatch.setattr(ollama, "chat_format_for", lambda tokenizer: wrong)
    row = ollama.request_ollama_import(imported["owner"], imported["model"].pk, "tiny-alpaca:wrong")
    ollama.run_ollama_import(row.pk, row.run_token)
    row.refresh_from_db()
    assert row.status == "failed"
    assert row.verification["golden"]["match"] is False
    assert row.error == row.verification["golden"]["reason"]
    assert "Ollama's answer" in row.error and "golden prompt" in row.error or "chat-template marker" in row.error


@pytest.mark.django_db
def test_an_error_from_ollama_fails_the_import_with_its_message(imported, fake_ollama):
    fake_ollama.fail_with["/api/create"] = (500, "insufficient disk space to create the model")
    row = ollama.request_ollama_import(imported["owner"], imported["model"].pk, "tiny-alpaca:v3")
    ollama.run_ollama_import(row.pk, row.run_token)
    row.refresh_from_db()
    assert row.status == "failed"
    assert row.error == ("Ollama refused the model creation (HTTP 500): insufficient disk space to create the model")


@pytest.mark.django_db
def test_an_unreachable_server_fails_fast_with_a_clear_message(user, make_finetuned, settings):
    settings.OLLAMA_HOST = f"127.0.0.1:{free_port()}"  # nothing listens there; no scheme, like Ollama's own variable
    model = make_finetuned(user)
    row = ollama.request_ollama_import(user, model.pk, "tiny-alpaca")
    assert row.host.startswith("http://127.0.0.1:")
    started = time.perf_counter()
    ollama.run_ollama_import(row.pk, row.run_token)
    row.refresh_from_db()
    assert row.status == "failed" and time.perf_counter() - started < 10
    assert row.error == (
        f"Cannot reach the Ollama server at {row.host} (connection refused). Check that Ollama is "
        "running there (`ollama serve`) and that OLLAMA_HOST points at it."
    )
    assert not ModelExport.objects.filter(model=model).exists()  # no GGUF export was started for nothing


# --- API -------------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["Bad Name", "UPPER", "-leading-dash", "name:", "x" * 64, "", "emoji😀"])
def test_a_bad_name_is_refused_with_a_clear_400(user, make_finetuned, name):
    model = make_finetuned(user)
    response = _client(user).post(f"/api/models/{model.pk}/ollama-import/", {"name": name}, format="json")
    assert response.status_code == 400
    data = response.json()
    if name:
        assert data["detail"].startswith(f"Invalid Ollama model name {name!r}: use 1-63 lowercase letters")
    assert data["errors"]["name"]
    assert not OllamaImport.objects.filter(model=model).exists()


@pytest.mark.django_db
def test_import_api_answers_202_with_the_run_command(
    user, make_finetuned, fake_ollama, django_capture_on_commit_callbacks
):
    model = make_finetuned(user)
    client = _client(user)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(f"/api/models/{model.pk}/ollama-import/", {"name": "my-model:v2"}, format="json")
    assert response.status_code == 202
    body = response.json()
    ns = ollama.namespace_of(user)
    assert {k: body[k] for k in ("status", "ollama_name", "run_command", "host")} == {
        "status": "queued",
        "ollama_name": f"{ns}/my-model:v2",
        "run_command": f"ollama run {ns}/my-model:v2",
        "host": fake_ollama.url,
    }
    assert len(callbacks) == 1
    assert client.get(f"/api/models/{model.pk}/ollama-imports/").json()["results"][0]["id"] == body["id"]
    assert (
        client.get(f"/api/models/ollama-imports/{body['id']}/").json()["run_command"] == f"ollama run {ns}/my-model:v2"
    )
    # Naming the own namespace explicitly gives the same name.
    again = client.post(f"/api/models/{model.pk}/ollama-import/", {"name": f"{ns}/my-model:v2"}, format="json")
    assert again.status_code == 202 and again.json()["ollama_name"] == f"{ns}/my-model:v2"


@pytest.mark.django_db
def test_the_import_takes_the_quantization_the_user_picks(
    user, make_finetuned, fake_ollama, django_capture_on_commit_callbacks
):
    model = make_finetuned(user)
    client = _client(user)
    with django_capture_on_commit_callbacks():
        picked = client.post(
            f"/api/models/{model.pk}/ollama-import/", {"name": "small", "quantization": "Q4_K_M"}, format="json"
        )
        default = client.post(f"/api/models/{model.pk}/ollama-import/", {"name": "plain"}, format="json")
    assert picked.status_code == 202 and default.status_code == 202
    assert picked.json()["quantization"] == "q4_k_m" and default.json()["quantization"] == "q8_0"
    bad = client.post(f"/api/models/{model.pk}/ollama-import/", {"name": "x", "quantization": "q2_k"}, format="json")
    assert bad.status_code == 400 and "choose one of: F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M" in bad.json()["detail"]


@pytest.mark.django_db
def test_names_are_namespaced_per_user_and_never_taken_over(make_finetuned, fake_ollama):
    """One user cannot overwrite what another runs with `ollama run NAME`: names live in the importer's namespace, a
    name in someone else's namespace is refused, and a name another user holds (two usernames can share a namespace)
    is refused with 409 before anything is queued."""
    from tests.factories import UserFactory

    ann, ann_upper, bob = UserFactory(username="ann"), UserFactory(username="Ann"), UserFactory(username="bob")
    first = _client(ann).post(
        f"/api/models/{make_finetuned(ann).pk}/ollama-import/", {"name": "assistant"}, format="json"
    )
    assert first.status_code == 202 and first.json()["ollama_name"] == "ann/assistant"

    bob_model = make_finetuned(bob)
    stolen = _client(bob).post(f"/api/models/{bob_model.pk}/ollama-import/", {"name": "ann/assistant"}, format="json")
    assert stolen.status_code == 400 and "namespace 'bob'" in stolen.json()["errors"]["name"][0]
    plain = _client(bob).post(f"/api/models/{bob_model.pk}/ollama-import/", {"name": "assistant"}, format="json")
    assert plain.status_code == 202 and plain.json()["ollama_name"] == "bob/assistant"

    clash = _client(ann_upper).post(
        f"/api/models/{make_finetuned(ann_upper).pk}/ollama-import/", {"name": "assistant:latest"}, format="json"
    )
    assert clash.status_code == 409 and "belongs to another user" in clash.json()["detail"]
    assert not OllamaImport.objects.filter(owner=ann_upper).exists()


@pytest.mark.django_db
def test_another_users_imports_are_404(imported, other_user):
    row, model = imported["import"], imported["model"]
    client = _client(other_user)
    assert client.get(f"/api/models/ollama-imports/{row.pk}/").status_code == 404
    assert client.get(f"/api/models/{model.pk}/ollama-imports/").status_code == 404
    assert client.post(f"/api/models/{model.pk}/ollama-import/", {"name": "mine"}, format="json").status_code == 404
    assert _client(imported["owner"]).get(f"/api/models/ollama-imports/{row.pk}/").status_code == 200


# --- chat template derivation (no server) -----------------------------------------------------------------------------


LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
ALPACA = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Response:\n' + message['content'] + eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
)
MISTRAL = "{% for message in messages %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endfor %}"


@pytest.fixture(scope="module")
def smol_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from training.engine.embedded import embedded_model_path

    return AutoTokenizer.from_pretrained(embedded_model_path())


@pytest.mark.parametrize(
    ("template", "family", "stops"),
    [
        (LLAMA3, "llama3", ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|im_end|>")),
        (ALPACA, "alpaca", ("### Instruction:", "<|im_end|>")),
        (MISTRAL, "gguf", ("<|im_end|>",)),
        (None, "none", ("<|im_end|>",)),
    ],
)
def test_templates_of_other_families_get_sensible_modelfiles(smol_tokenizer, template, family, stops):
    import copy

    tokenizer = copy.copy(smol_tokenizer)
    tokenizer.chat_template = template
    fmt = modelfile.chat_format_for(tokenizer)
    assert fmt.family == family and fmt.stop == stops
    if family in ("llama3", "alpaca"):
        assert fmt.check["match"], fmt.check
        hf = tokenizer.apply_chat_template(
            [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
        )
        if family == "llama3":
            hf = hf.removeprefix(tokenizer.bos_token)  # llama.cpp adds BOS from the GGUF's flag
        assert modelfile.render_go_template(fmt.template, system=fmt.system, prompt="Hi") == hf
    if family == "gguf":  # unknown template: no TEMPLATE, Ollama uses the one embedded in the GGUF
        assert fmt.template == "" and "embedded in the GGUF" in fmt.check["note"]
    text = modelfile.render_modelfile(fmt, modelfile.default_parameters(8192), "m.gguf")
    assert ("TEMPLATE" in text) == bool(fmt.template)


def test_exports_helpers_name_files_and_storage_keys():
    assert (
        exports.QUANTIZATIONS == ("f16", "q8_0", "q6_k", "q5_k_m", "q4_k_m")
        and ollama.normalize_host("0.0.0.0") == "http://0.0.0.0:11434"
    )
    assert ollama.normalize_host("https://ollama.example.com/") == "https://ollama.example.com"
