"""Talking to a running platform from a test: a signed-up browser-like session (cookie + CSRF) against daphne, and
waiting for a job to reach a state."""

from __future__ import annotations

import time

import requests

from training.models import TrainingJob


def register_session(daphne_url, username):
    """A requests session signed up (and so signed in) as ``username`` on the daphne at ``daphne_url``."""
    s = requests.Session()
    s.get(f"{daphne_url}/api/auth/csrf/").raise_for_status()
    r = s.post(
        f"{daphne_url}/api/auth/register/",
        json={"username": username, "email": f"{username}@example.com", "password": "x-Strong-pass-1"},
        headers={"X-CSRFToken": s.cookies["csrftoken"], "Referer": daphne_url + "/"},
    )
    assert r.status_code == 201, r.text
    return s


def post_json(s, daphne_url, path, body):
    """POST JSON with the session's CSRF token, as the web app does."""
    return s.post(
        f"{daphne_url}{path}", json=body, headers={"X-CSRFToken": s.cookies["csrftoken"], "Referer": daphne_url + "/"}
    )


def wait_for_status(job_id, statuses, timeout):
    """The job once its status is one of ``statuses`` (polls the database; fails after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = TrainingJob.objects.get(pk=job_id)
        if job.status in statuses:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} stayed {TrainingJob.objects.get(pk=job_id).status}; wanted {statuses}")
