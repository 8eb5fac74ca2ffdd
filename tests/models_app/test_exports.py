"""Exports on the real trained adapter: adapter / merged / GGUF round trips, llama.cpp verification (and a broken GGUF
caught by it), signed download links, owner scoping, and one export through a real Celery worker."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from rest_framework.test import APIClient

from models_app import exports
from models_app.artifacts import model_folder
from models_app.models import ModelExport

GOLDEN_PROMPT = "What is the capital of France?"  # the one verification prompt of these tests (FAST_VERIFY)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture(scope="module")
def gguf_f16(django_db_setup: Any, django_db_blocker: Any, committed_model: Any, trained_adapter_dir: Path) -> Any:
    """One real f16 GGUF export (merge, llama.cpp converter, verification), shared by this module's tests.
    (The q8_0 export is made, and checked, by the Ollama import in test_ollama.py.)"""
    with committed_model(trained_adapter_dir) as model:
        enqueued: list[tuple[int, str]] = []
        with pytest.MonkeyPatch.context() as mp, django_db_blocker.unblock():
            mp.setattr(exports, "_enqueue", lambda export_id, token: enqueued.append((export_id, token)))
            started = time.perf_counter()
            export = exports.request_export(model.owner, model.pk, "gguf", "f16")
            exports.run_export(export.pk, export.run_token)
            export.refresh_from_db()
            seconds = time.perf_counter() - started
        print(f"\nf16 GGUF export: {seconds:.1f} s, timings {export.verification.get('timings')}")
        yield {"export": export, "model": model, "owner": model.owner, "enqueued": enqueued}


# --- GGUF ------------------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_gguf_f16_export_is_verified_on_llama_cpp_and_stored(gguf_f16):
    export = ModelExport.objects.get(pk=gguf_f16["export"].pk)
    assert gguf_f16["enqueued"] == [(export.pk, export.run_token)]  # request_export enqueued it after commit
    assert export.status == "succeeded", export.error
    assert export.progress == 1.0 and export.stage == "ready" and export.error == ""
    report = export.verification
    assert report["passed"] is True and report["quantization"] == "f16" and report["chat_template_in_gguf"]
    assert [c["prompt"] for c in report["checks"]] == [GOLDEN_PROMPT]
    assert all(c["match"] and c["tokenizer_match"] and c["hf_answer"] for c in report["checks"])
    # f16 is within rounding of the fp32 transformers model: llama.cpp's greedy answer starts like the reference.
    check = report["checks"][0]
    assert check["llama_token_ids"][:8] == check["hf_token_ids"][:8]
    assert set(report["timings"]) >= {"export_s", "conversion_s", "merge_s", "store_s", "total_s"}
    assert export.file_key == f"exports/{export.owner_id}/{export.model_id}/{export.pk}/tiny-alpaca-v1-F16.gguf"
    with default_storage.open(export.file_key, "rb") as fh:
        data = fh.read()
    assert data[:4] == b"GGUF" and len(data) == export.size_bytes > 200_000_000
    assert _sha256(data) == export.sha256


@pytest.mark.django_db
def test_a_second_delivery_of_the_export_task_is_a_noop(gguf_f16):
    export = ModelExport.objects.get(pk=gguf_f16["export"].pk)
    assert exports.run_export(export.pk, export.run_token) is None
    assert exports.run_export(export.pk, "some-other-token") is None
    after = ModelExport.objects.get(pk=export.pk)
    assert (after.status, after.file_key, after.sha256, after.finished) == (
        export.status,
        export.file_key,
        export.sha256,
        export.finished,
    )


@pytest.mark.django_db
def test_an_identical_request_reuses_the_succeeded_export(gguf_f16, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        again = exports.request_export(gguf_f16["owner"], gguf_f16["model"].pk, "GGUF", " F16 ")
    assert again.pk == gguf_f16["export"].pk and callbacks == []
    assert ModelExport.objects.filter(model=gguf_f16["model"]).count() == 1


@pytest.mark.django_db
def test_a_broken_gguf_fails_verification_and_is_not_offered(gguf_f16, monkeypatch):
    """The converter 'succeeds' but writes a GGUF whose tensor data is damaged: verification refuses it."""
    from training.engine.exporters import gguf as gguf_module

    good = Path(default_storage.path(gguf_f16["export"].file_key))

    def broken_converter(hf_dir: str, outfile: str, quantization: str, **_: Any) -> float:
        shutil.copyfile(good, outfile)
        size = Path(outfile).stat().st_size
        with open(outfile, "r+b") as fh:  # keep the header, zero half of the tensor data
            fh.seek(size // 3)
            fh.write(b"\0" * (size // 2))
        return 0.0

    monkeypatch.setattr(gguf_module, "convert_to_gguf", broken_converter)
    export = exports.request_export(gguf_f16["owner"], gguf_f16["model"].pk, "gguf", "q8_0")
    exports.run_export(export.pk, export.run_token)
    export.refresh_from_db()
    assert export.status == "failed"
    assert "GGUF verification of" in export.error and "transformers:" in export.error and "llama.cpp:" in export.error
    assert export.verification["passed"] is False
    failed = [c for c in export.verification["checks"] if not c["match"]]
    assert failed and failed[0]["hf_answer"] != failed[0]["llama_answer"]
    assert export.file_key == "" and export.sha256 == ""
    response = _client(gguf_f16["owner"]).get(f"/api/models/exports/{export.pk}/download/")
    assert response.status_code == 409 and "not ready" in response.json()["detail"]
    detail = _client(gguf_f16["owner"]).get(f"/api/models/exports/{export.pk}/").json()
    assert detail["status"] == "failed" and detail["verified"] is False and "transformers:" in detail["error"]


# --- adapter / merged --------------------------------------------------------------------------------------------


def _receive_all(layer: Any, channel: str) -> list[dict]:
    import asyncio

    from tests.processes import run_async

    async def drain() -> list[dict]:
        out = []
        while True:
            try:
                out.append(await asyncio.wait_for(layer.receive(channel), timeout=0.5))
            except TimeoutError:
                return out

    return run_async(drain())


@pytest.mark.django_db
def test_adapter_export_reloads_on_the_base_with_peft_and_carries_the_model_card(
    user, make_finetuned, tmp_path, settings, django_capture_on_commit_callbacks
):
    import torch
    from channels.layers import get_channel_layer
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from accounts.realtime import user_group
    from tests.processes import run_async
    from training.engine.embedded import embedded_model_path

    settings.MEDIA_ROOT = str(tmp_path / "media")
    model = make_finetuned(user)
    layer = get_channel_layer()
    channel = run_async(layer.new_channel())
    run_async(layer.group_add(user_group(user.pk), channel))

    with django_capture_on_commit_callbacks() as enqueue:  # not sent: this test runs the export itself
        export = exports.request_export(user, model.pk, "adapter", None)
    assert len(enqueue) == 1
    with django_capture_on_commit_callbacks(execute=True):
        exports.run_export(export.pk, export.run_token)
    export.refresh_from_db()
    assert export.status == "succeeded", export.error
    events = [m["payload"] for m in _receive_all(layer, channel)]
    mine = [e for e in events if e["kind"] == "export" and e["id"] == export.pk]
    assert mine[-1]["status"] == "succeeded" and mine[-1]["progress"] == 1.0
    assert any(0 < e["progress"] < 1 and e["status"] == "running" for e in mine)

    with default_storage.open(export.file_key, "rb") as fh:
        data = fh.read()
    assert _sha256(data) == export.sha256
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
        root = "tiny-alpaca-v1-adapter"
        assert {
            f"{root}/README.md",
            f"{root}/adapter_config.json",
            f"{root}/adapter_model.safetensors",
            f"{root}/export.json",
        } <= names
        zf.extractall(tmp_path / "unzipped")
    folder = tmp_path / "unzipped" / root
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n" in card
    assert "\nlibrary_name: peft\n" in card and "# tiny-alpaca" in card
    assert "dequantized to fp32 from the Q4_1 GGUF" in card  # the embedded model's weights, said plainly
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"

    base_path = embedded_model_path()
    ids = torch.tensor([[1, 4093, 198, 6004, 2, 198]])
    with torch.no_grad():
        ours = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), str(folder)).eval()
        with model_folder(model) as stored:
            reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_path), str(stored)).eval()
        plain = AutoModelForCausalLM.from_pretrained(base_path).eval()
        a, b, c = ours(ids).logits, reference(ids).logits, plain(ids).logits
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3  # the adapter really changes the model


@pytest.mark.django_db
def test_merged_export_generates_like_the_verified_reference(gguf_f16, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    export = exports.request_export(gguf_f16["owner"], gguf_f16["model"].pk, "merged")
    exports.run_export(export.pk, export.run_token)
    export.refresh_from_db()
    assert export.status == "succeeded", export.error
    path = Path(default_storage.path(export.file_key))
    assert path.name == "tiny-alpaca-v1-merged.zip"
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("tiny-alpaca-v1-merged/model.safetensors").compress_type == zipfile.ZIP_STORED
        zf.extractall(tmp_path)
    default_storage.delete(export.file_key)
    folder = tmp_path / "tiny-alpaca-v1-merged"
    card = (folder / "README.md").read_text()
    assert "\nlibrary_name: transformers\n" in card
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": GOLDEN_PROMPT}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **ids,
            max_new_tokens=gguf_f16["export"].verification["max_new_tokens"],
            do_sample=False,
            pad_token_id=tokenizer.eos_token_id,
        )
    tokens = out[0, ids["input_ids"].shape[1] :].tolist()
    # The same greedy tokens as the transformers reference the GGUF was verified against (base + adapter, merged).
    assert tokens == gguf_f16["export"].verification["checks"][0]["hf_token_ids"]


# --- requests, links, access -------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"format": "onnx"}, "format", "Unknown export format 'onnx'; choose one of: adapter, merged, gguf."),
        (
            {"format": "gguf", "quantization": "Q3_K_M"},
            "quantization",
            "GGUF quantization 'Q3_K_M' is not supported; choose one of: F16, Q8_0, Q6_K, Q5_K_M, Q4_K_M.",
        ),
        ({"format": "merged", "quantization": "q8_0"}, "quantization", "Quantization applies only to GGUF exports"),
        ({}, "format", "This field is required."),
    ],
)
def test_bad_export_requests_get_clear_400s(user, make_finetuned, body, field, message):
    model = make_finetuned(user)
    response = _client(user).post(f"/api/models/{model.pk}/export/", body, format="json")
    assert response.status_code == 400
    data = response.json()
    assert message in data["detail"] and message in data["errors"][field][0]
    assert not ModelExport.objects.filter(model=model).exists()


@pytest.mark.django_db
def test_a_full_fine_tune_has_no_adapter_to_export(user, make_finetuned):
    model = make_finetuned(user, weights="full")
    response = _client(user).post(f"/api/models/{model.pk}/export/", {"format": "adapter"}, format="json")
    assert response.status_code == 400 and "has no LoRA adapter" in response.json()["detail"]


@pytest.mark.django_db
def test_export_api_accepts_lists_and_details(user, make_finetuned, django_capture_on_commit_callbacks):
    model = make_finetuned(user)
    client = _client(user)
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            f"/api/models/{model.pk}/export/", {"format": "gguf", "quantization": "f16"}, format="json"
        )
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["format"] == "gguf" and body["quantization"] == "f16"
    assert body["file_name"] == "tiny-alpaca-v1-F16.gguf" and body["download"] is None
    assert len(callbacks) == 1  # the Celery task is sent once the transaction commits
    listed = client.get(f"/api/models/{model.pk}/exports/").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]
    assert client.get(f"/api/models/exports/{body['id']}/").json()["id"] == body["id"]
    # Asking again while it is queued returns the same export instead of starting a second one.
    again = client.post(f"/api/models/{model.pk}/export/", {"format": "gguf", "quantization": "f16"}, format="json")
    assert again.status_code == 202 and again.json()["id"] == body["id"]


@pytest.mark.django_db
def test_signed_link_streams_the_file_to_anyone_holding_it_until_it_expires(gguf_f16, settings, monkeypatch):
    export = gguf_f16["export"]
    owner_client = _client(gguf_f16["owner"])
    response = owner_client.get(f"/api/models/exports/{export.pk}/download/")
    assert response.status_code == 200
    link = response.json()
    assert link["expires_in"] == settings.EXPORT_LINK_TTL_S == 300
    assert link["file_name"] == "tiny-alpaca-v1-F16.gguf" and link["sha256"] == export.sha256
    assert link["url"].startswith(f"http://testserver/api/models/exports/{export.pk}/download/?sig=")

    anonymous = APIClient()
    streamed = anonymous.get(link["url"])
    assert streamed.status_code == 200
    assert streamed["Content-Disposition"] == 'attachment; filename="tiny-alpaca-v1-F16.gguf"'
    assert _sha256(b"".join(streamed.streaming_content)) == export.sha256

    redirect = owner_client.get(f"/api/models/exports/{export.pk}/download/?redirect=1")
    assert redirect.status_code == 302 and "?sig=" in redirect["Location"]

    # The same link after its lifetime: refused with a clear message.
    import django.core.signing as signing

    real_time = time.time
    monkeypatch.setattr(signing.time, "time", lambda: real_time() + settings.EXPORT_LINK_TTL_S + 5)
    expired = anonymous.get(link["url"])
    assert expired.status_code == 403
    assert "This download link has expired (links are valid for 300 seconds)" in expired.json()["detail"]


@pytest.mark.django_db
def test_forged_or_misused_links_are_refused(gguf_f16, other_user, make_finetuned):
    export = gguf_f16["export"]
    anonymous = APIClient()
    token = exports.download_token(export)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    response = anonymous.get(f"/api/models/exports/{export.pk}/download/", {"sig": tampered})
    assert response.status_code == 403 and "not valid" in response.json()["detail"]
    # A valid signature for one export does not open another.
    other_model = make_finetuned(other_user)
    other = ModelExport.objects.create(
        owner=other_user,
        model=other_model,
        format="adapter",
        status="succeeded",
        file_key=export.file_key,
        sha256=export.sha256,
    )
    response = anonymous.get(f"/api/models/exports/{other.pk}/download/", {"sig": token})
    assert response.status_code == 403 and "not valid" in response.json()["detail"]
    # Without a signature, a signed-out caller gets nothing.
    assert anonymous.get(f"/api/models/exports/{export.pk}/download/").status_code in (401, 403)


@pytest.mark.django_db
def test_another_users_model_exports_and_downloads_are_404(gguf_f16, other_user):
    export, model = gguf_f16["export"], gguf_f16["model"]
    client = _client(other_user)
    for url in (
        f"/api/models/exports/{export.pk}/",
        f"/api/models/exports/{export.pk}/download/",
        f"/api/models/{model.pk}/exports/",
        f"/api/models/{model.pk}/ollama-imports/",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json()["detail"]
    for url, body in (
        (f"/api/models/{model.pk}/export/", {"format": "adapter"}),
        (f"/api/models/{model.pk}/ollama-import/", {"name": "stolen"}),
    ):
        assert client.post(url, body, format="json").status_code == 404, url
    assert client.get("/api/models/999999/exports/").status_code == 404


# --- through a real Celery worker ---------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_an_export_runs_on_a_real_celery_worker(celery_worker_process, user, make_finetuned):
    model = make_finetuned(user)
    client = _client(user)
    response = client.post(f"/api/models/{model.pk}/export/", {"format": "adapter"}, format="json")
    assert response.status_code == 202
    export_id = response.json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        export = ModelExport.objects.get(pk=export_id)
        if export.status in ("succeeded", "failed"):
            break
        time.sleep(0.5)
    assert export.status == "succeeded", (export.status, export.error)
    link = client.get(f"/api/models/exports/{export_id}/download/").json()
    streamed = APIClient().get(link["url"])
    data = b"".join(streamed.streaming_content)
    assert streamed.status_code == 200 and _sha256(data) == export.sha256
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert "tiny-alpaca-v1-adapter/README.md" in zf.namelist()
    default_storage.delete(export.file_key)
