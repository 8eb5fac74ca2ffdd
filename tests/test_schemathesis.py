"""Schemathesis against `/api/schema/` on a live server (daphne on the test database), signed in with an API token:
every operation of the schema, every phase (examples, coverage, fuzzing, stateful) and every check of
`schemathesis run` (no server error, responses that match their schema, every returned status and content type
documented, schema-valid requests accepted, schema-violating ones rejected, auth not ignored...). A bounded,
deterministic run (SCHEMATHESIS_MAX_EXAMPLES per operation, default 20: about 3,600 cases) takes one to three
minutes on a 2-core machine; set `SCHEMATHESIS_MAX_EXAMPLES=200` for a long exploratory run.

The fuzzing user owns real objects (a ready dataset with a file, a succeeded job with its fine-tuned model, a failed
job, an export and an Ollama import) so that path ids hit something now and then. No Celery worker runs: jobs,
validations, exports and downloads it queues stay queued, and nothing heavy runs in the web process.

No model can answer in the playground: a valid chat request would be queued for the `inference` Celery worker (none
runs here: the web side would wait PLAYGROUND_TIMEOUT_S and answer 504; with one it would load a model). The
fuzzing user's fine-tuned model has no stored files and the catalogue's base model is marked as still downloading
for the run, so `POST /api/models/{{id}}/generate/` and `POST /api/models/base/{{id}}/generate/` answer 409 at once
after checking the request; everything else about them is fuzzed.

Exclusions (as few as possible):
- The fuzzing user's API token has an id no generator draws (`DELETE /api/auth/tokens/{{id}}/` on it would sign the
  run out); every other operation, sign-out included, is fuzzed (with token auth, sign-out ends no session).
- `POST /api/auth/register/` and `POST /api/auth/login/` answer 403 to this run (they need the CSRF cookie and
  header of a browser session; a signed-in script has no use for them), so only their refusals are exercised.

Where a schema-valid request may still get a 400 (there `positive_data_acceptance` also accepts 400; every other
check runs as usual), because the answer depends on something a JSON Schema cannot say (RULES_OUTSIDE_THE_SCHEMA):
{rules}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.processes import server_env, start_daphne, stop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

MAX_EXAMPLES = int(os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "20"))
TOKEN_ID = 7_654_321_987  # the fuzzing user's own token: far from anything a generator draws
RULES_OUTSIDE_THE_SCHEMA = {
    "GET /api/datasets/{id}/preview/": "`base_model` must be a catalogue id this user may use",
    "GET /api/models/hub/info/": "the fuzzing user has no Hugging Face token (the Hub calls need one: 400)",
    "GET /api/models/hub/search/": "the fuzzing user has no Hugging Face token",
    "POST /api/models/hub/download/": "the fuzzing user has no Hugging Face token",
    "POST /api/models/{id}/push-hub/": "the fuzzing user has no Hugging Face token",
    "POST /api/auth/hf-token/": "the token is checked with the Hub",
    "POST /api/auth/change-password/": "the old password must be the current one, the new one pass the validators",
    "PATCH /api/auth/me/": "a webhook URL must be a full http(s) URL (Django's URLValidator)",
    "PATCH /api/datasets/{id}/": "`format` must be a known format and `column_mapping` map that format's fields",
    "POST /api/datasets/{id}/validate/": "`format` and `column_mapping` as above; `base_model` a catalogue id the "
    "user may use",
    "POST /api/datasets/": "the files must hold a readable dataset of their claimed type",
    "POST /api/datasets/{id}/preprocess/": "each step must be a known step with its own parameters",
    "POST /api/models/{id}/export/": "a quantization only for GGUF; an adapter export only for a LoRA model",
    "POST /api/models/{id}/ollama-import/": "Ollama's name rules, within the user's own namespace",
    "POST /api/models/{id}/generate/": "conversation rules: the last message the user's, a system message first, "
    "no blank message",
    "POST /api/models/base/{id}/generate/": "the same conversation rules",
    "POST /api/training/estimate/": "the dataset and base model must be ones the user may train on; the "
    "hyperparameters pass the engine's checks; a Modal GPU for the Modal backend",
    "POST /api/training/jobs/": "the same as the estimate",
    "POST /api/training/sweeps/": "the same as a job; the swept parameters must be numeric hyperparameters and "
    "every variant pass the engine's checks; the whole sweep must fit the quotas",
    "POST /api/training/jobs/{id}/continue/": "the job's dataset must be ready and its settings still valid",
}
ACCEPTED = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]  # schemathesis' default, plus 400
__doc__ = __doc__.format(rules="\n".join(f"- `{op}`: {why}." for op, why in RULES_OUTSIDE_THE_SCHEMA.items()))

CONFIG = f"""
[generation]
max-examples = {MAX_EXAMPLES}
deterministic = true
"""
ALLOWANCES = f"""
[[operations]]
include-name = {json.dumps(sorted(RULES_OUTSIDE_THE_SCHEMA))}
checks.positive_data_acceptance.expected-statuses = {json.dumps(ACCEPTED)}
"""


def _fuzzing_user() -> str:
    """The fuzzing user, the objects it owns, and its API token's key."""
    from accounts.models import ApiToken, User
    from accounts.services import create_api_token
    from models_app.models import BaseModel, ModelExport, OllamaImport
    from tests.factories import FineTunedModelFactory, TrainingJobFactory, make_ready_dataset

    user = User.objects.create_user(username="fuzzer", email="fuzzer@example.com", password="x-Strong-pass-1")
    dataset = make_ready_dataset(user)
    done = TrainingJobFactory(owner=user, dataset=dataset, status="succeeded", name="fuzz-done")
    TrainingJobFactory(owner=user, dataset=dataset, status="failed", name="fuzz-failed", error="boom")
    model = FineTunedModelFactory(owner=user, job=done, name="fuzz-model")
    ModelExport.objects.create(owner=user, model=model, format="adapter", status="failed", error="boom")
    OllamaImport.objects.create(owner=user, model=model, ollama_name="fuzzer/fuzz-model", status="failed")
    assert not model.artifact_key  # no files: the playground refuses it (409) before queueing anything
    BaseModel.objects.update(status=BaseModel.Status.DOWNLOADING)  # the same for every base model
    created = create_api_token(user, name="fuzzing")
    ApiToken.objects.filter(id=created.token.pk).update(id=TOKEN_ID)
    return created.key


def _summary(report: dict[str, Any]) -> tuple[list[str], Counter[str]]:
    """One line per unique failure, and how many of each kind."""
    lines, kinds = [], Counter()
    for failure in report.get("failures", []):
        kinds[failure.get("title", "?")] += 1
        lines.append(json.dumps(failure)[:600])
    return lines, kinds


def test_every_operation_conforms_to_the_schema(test_db_name, fake_hub_server, tmp_path):
    key = _fuzzing_user()
    env = server_env(test_db_name, HF_ENDPOINT=fake_hub_server.url, PLAYGROUND_TIMEOUT_S="5")
    proc, port = start_daphne(env, tmp_path / "daphne.log")
    config = tmp_path / "schemathesis.toml"
    # SCHEMATHESIS_STRICT=1: without RULES_OUTSIDE_THE_SCHEMA, to see what they cover.
    config.write_text(CONFIG + ("" if os.environ.get("SCHEMATHESIS_STRICT") else ALLOWANCES))
    report_path = tmp_path / "report.json"
    cmd = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"http://127.0.0.1:{port}/api/schema/",
        "-H",
        f"Authorization: Token {key}",
        "--workers",
        "1",
        "--report",
        "json",
        "--report-json-path",
        str(report_path),
        "--request-timeout",
        "30",
    ]
    started = time.monotonic()
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    finally:
        stop(proc)
    elapsed = time.monotonic() - started
    (tmp_path / "schemathesis.out").write_text(run.stdout + run.stderr)
    if os.environ.get("SCHEMATHESIS_OUT"):
        Path(os.environ["SCHEMATHESIS_OUT"]).write_text(run.stdout + run.stderr)
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    lines, kinds = _summary(report)
    operations, cases = report.get("operations", {}), report.get("test_cases", {})
    print(
        f"\nschemathesis: {operations.get('tested')}/{operations.get('total')} operations, "
        f"{cases.get('generated')} cases, {elapsed:.0f} s, failures {dict(kinds) or 0}"
    )
    assert run.returncode == 0 and not lines, "\n".join([run.stdout[-20000:], run.stderr[-3000:], *lines])
    assert operations["tested"] == operations["total"] >= 60, operations  # every operation of the schema
