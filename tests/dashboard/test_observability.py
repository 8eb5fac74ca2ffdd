"""Sentry starts only with SENTRY_DSN (with the Django and Celery integrations); JSON log lines carry the bound
job_id/user_id and parse."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import django, sentry_sdk; django.setup(); from django.conf import settings; c = sentry_sdk.get_client(); "
    "print(settings.SENTRY_ENABLED, c.is_active(), sorted(getattr(c, 'integrations', {})))"
)


def _probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "SENTRY_DSN"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "DJANGO_SETTINGS_MODULE": "finetune.settings", **env},
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def test_sentry_is_off_without_a_dsn_and_on_with_django_and_celery_with_one():
    assert _probe().startswith("False False")
    on = _probe(SENTRY_DSN="http://publickey@127.0.0.1:9/1")
    assert on.startswith("True True") and "'celery'" in on and "'django'" in on, on


def test_json_log_lines_carry_the_bound_job_and_user():
    from finetune.observability import ContextFilter, JsonFormatter, log_context

    record_lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            record_lines.append(self.format(record))

    handler = Keep()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    log = logging.getLogger("training.engine.test_json")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with log_context(job_id=41, user_id=7):
            log.info("step %s of %s", 3, 6)
        log.info("outside")
    finally:
        log.removeHandler(handler)
    inside, outside = (json.loads(line) for line in record_lines)
    assert inside["message"] == "step 3 of 6" and inside["job_id"] == 41 and inside["user_id"] == 7
    assert inside["level"] == "INFO" and inside["logger"] == "training.engine.test_json" and "time" in inside
    assert "job_id" not in outside
