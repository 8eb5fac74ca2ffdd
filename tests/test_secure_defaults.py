"""Secure defaults that follow the deployment, checked in fresh processes (settings are read once, at start):
`manage.py check --deploy` of an https:// site with real secrets reports nothing, cookies/redirect/HSTS follow the
scheme of SITE_URL (a plain-http site still signs in), and no process sends Hugging Face usage telemetry."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent


def production_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SECURE_", "SESSION_COOKIE", "CSRF_COOKIE", "HF_HUB_", "FINETUNE_TESTING"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "finetune.settings",
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FINETUNE_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "ft.example.com,127.0.0.1",
            **extra,
        }
    )
    return env


def run_python(code: str, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


SHOW = (
    "import django, json; django.setup(); from django.conf import settings as s; print(json.dumps({k: getattr(s, k)"
    " for k in ('SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS')}))"
)


def test_check_deploy_of_an_https_site_reports_nothing():
    env = production_env(
        SITE_URL="https://ft.example.com", CSRF_TRUSTED_ORIGINS="https://ft.example.com", SECURE_HSTS_PRELOAD="1"
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "System check identified no issues" in out.stdout


def test_cookies_redirect_and_hsts_follow_the_site_scheme():
    https = json.loads(run_python(SHOW, production_env(SITE_URL="https://ft.example.com")))
    assert https == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
    }
    # The default plain-http address keeps working with DEBUG off: a browser would drop secure cookies there.
    http = json.loads(run_python(SHOW, production_env(SITE_URL="http://127.0.0.1:8000")))
    assert http == {
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
    }


def test_no_hugging_face_telemetry_in_web_worker_or_engine_processes():
    env = production_env(SITE_URL="http://127.0.0.1:8000")
    web = "import django; django.setup(); import huggingface_hub.constants as c; print(c.HF_HUB_DISABLE_TELEMETRY)"
    engine = "import training.engine; import huggingface_hub.constants as c; print(c.HF_HUB_DISABLE_TELEMETRY)"
    assert run_python(web, env).strip() == "True"  # the web tier and Celery workers load the settings
    env.pop("DJANGO_SETTINGS_MODULE")
    assert run_python(engine, env).strip() == "True"  # the engine alone: Modal and the CLI


def start_error(env: dict[str, str]) -> str:
    """What `manage.py check` says when the settings refuse to start."""
    out = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0, out.stdout
    return out.stderr.strip().splitlines()[-1]


def test_example_values_and_broken_fernet_keys_are_refused_at_start():
    site = {"SITE_URL": "http://127.0.0.1:8000"}
    assert "SECRET_KEY still has the example value from .env.example" in start_error(
        production_env(**site, SECRET_KEY="change-me-to-a-long-random-string")
    )
    assert "FINETUNE_ADMIN_PASSWORD still has the example value" in start_error(
        production_env(**site, FINETUNE_ADMIN_PASSWORD="change-me")
    )
    broken = production_env(**site)
    broken["FINETUNE_ENCRYPTION_KEYS"] = Fernet.generate_key().decode() + ",not-a-key"
    assert "FINETUNE_ENCRYPTION_KEYS: key 2 is not a Fernet key" in start_error(broken)
