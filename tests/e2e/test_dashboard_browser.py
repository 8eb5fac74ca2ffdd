"""In Chromium: the home dashboard shows a real running job's progress moving over its websocket, with counts, charts
and quota bars; then an operator signs in to the admin, opens the queue view (the job under its worker, the worker
alive and running it), and cancels the job with the admin action. Screenshots in test-artifacts/dashboard/."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.factories import TINY_HYPER, make_ready_dataset

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]
PASSWORD = "Gradient-Descent-42"


@pytest.fixture(scope="module")
def dashboard_worker(test_db_name, daphne_url, tmp_path_factory):
    from tests.processes import server_env, start_celery_worker, stop

    proc, node = start_celery_worker(
        server_env(test_db_name, SITE_URL=daphne_url), tmp_path_factory.mktemp("dbw") / "worker.log", queues="training"
    )
    yield node
    stop(proc)


def seed_history(owner, dataset, base) -> None:
    """Finished jobs over the last days, so the charts have something to draw."""
    from training.models import TrainingJob

    now = timezone.now()
    rows = [
        ("sft", "succeeded", 1, 1.42, 1.55, 1800),
        ("sft", "succeeded", 2, 1.18, 1.31, 2700),
        ("dpo", "succeeded", 3, 0.52, 0.61, 1200),
        ("sft", "failed", 3, None, None, 300),
    ]
    for i, (method, status, days_ago, loss, eval_loss, seconds) in enumerate(rows):
        when = now - timedelta(days=days_ago)
        metrics = {"train_loss_last": loss, "eval_loss_after": eval_loss} if loss is not None else {}
        job = TrainingJob.objects.create(
            owner=owner,
            name=f"earlier run {i + 1}",
            base_model=base,
            dataset=dataset,
            method=method,
            weights="lora",
            hyperparameters=TINY_HYPER,
            status=status,
            finished=when,
            started=when,
            compute_seconds=seconds,
            result={"metrics": metrics},
            progress=1.0 if status == "succeeded" else 0.4,
            error="Out of memory" if status == "failed" else "",
        )
        TrainingJob.objects.filter(pk=job.pk).update(created=when - timedelta(seconds=seconds))


def test_dashboard_live_progress_and_admin_queue(browser, daphne_url, dashboard_worker, artifacts_dir, tmp_path):
    from accounts.models import AuditLog, User
    from models_app.models import BaseModel
    from training import services

    shots = artifacts_dir / "dashboard"
    shots.mkdir(parents=True, exist_ok=True)

    dana = User.objects.create_user(username="dana", email="dana@example.com", password=PASSWORD)
    User.objects.create_superuser(username="ops", email="ops@example.com", password=PASSWORD)
    base = BaseModel.objects.ensure_embedded()
    ds = make_ready_dataset(dana, name="tiny alpaca")
    seed_history(dana, ds, base)
    # Long enough to be watched (and cancelled) while it runs.
    job = services.create_job(
        owner=dana,
        name="live run",
        base_model_id=base.pk,
        dataset_id=ds.pk,
        method="sft",
        weights="lora",
        hyperparameters={**TINY_HYPER, "max_steps": 400, "save_steps": 50, "eval_steps": 50},
    )

    user_ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = user_ctx.new_page()
    page.set_default_timeout(15000)
    page.goto(f"{daphne_url}/login")
    page.get_by_label("Username").fill("dana")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("user-menu")).to_contain_text("dana")

    page.goto(f"{daphne_url}/")
    expect(page.get_by_test_id("stat-jobs-value")).to_have_text("5")
    expect(page.get_by_test_id("stat-datasets-value")).to_have_text("1")
    expect(page.get_by_test_id("stat-success-value")).to_have_text("75%")
    expect(page.get_by_test_id("jobs-per-day-chart")).to_have_attribute("data-total", "5")
    expect(page.get_by_test_id("loss-by-method-chart")).to_have_attribute("data-methods", "2")
    expect(page.get_by_test_id("quota-concurrent_jobs")).to_be_visible()
    row = page.locator(f'[data-testid=running-job][data-job-id="{job.pk}"]')
    expect(row).to_be_visible()
    expect(row.get_by_test_id("live-state")).to_have_attribute("data-state", "open", timeout=20000)
    # Progress moves over the websocket: metric messages arrive and the step number climbs.
    page.wait_for_function(
        f"() => Number(document.querySelector('[data-testid=running-job][data-job-id=\"{job.pk}\"]')"
        "?.dataset.liveUpdates || 0) >= 2",
        timeout=300000,
    )
    first_step = int(row.get_attribute("data-step"))
    page.wait_for_function(
        f"() => Number(document.querySelector('[data-testid=running-job][data-job-id=\"{job.pk}\"]')"
        f"?.dataset.step || 0) > {first_step}",
        timeout=120000,
    )
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / "01-dashboard-live-progress.png"), full_page=True)

    # The operator's side: the admin index links the queue view; the job shows under the worker that runs it.
    admin_ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    admin = admin_ctx.new_page()
    admin.set_default_timeout(15000)
    admin.goto(f"{daphne_url}/admin/login/")
    admin.locator("#id_username").fill("ops")
    admin.locator("#id_password").fill(PASSWORD)
    admin.locator("input[type=submit]").click()
    expect(admin.get_by_test_id("queue-link")).to_be_visible()
    admin.screenshot(path=str(shots / "02-admin-index.png"), full_page=True)
    admin.get_by_test_id("queue-link").click()
    expect(admin).to_have_url(re.compile(r"/admin/training/trainingjob/queue/$"))
    node_group = admin.locator(f'[data-testid=running-node][data-node="{dashboard_worker}"]')
    expect(node_group.locator(f'[data-testid=running-job][data-job-id="{job.pk}"]')).to_be_visible()
    worker_row = admin.locator(f'[data-testid=worker][data-worker="{dashboard_worker}"]')
    expect(worker_row).to_contain_text("alive")
    expect(worker_row).to_contain_text("training")
    expect(worker_row).to_contain_text(f"job {job.pk}")
    admin.screenshot(path=str(shots / "03-admin-queue.png"), full_page=True)

    # Cancel it from the jobs list with the admin action: the same service as the API, written to the audit log.
    admin.goto(f"{daphne_url}/admin/training/trainingjob/?status__exact=running")
    admin.locator(f'input[name=_selected_action][value="{job.pk}"]').check()
    admin.locator("select[name=action]").select_option("cancel_jobs")
    admin.locator("button[name=index]").click()
    expect(admin.locator(".messagelist")).to_contain_text("1 job(s) cancelled.")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status == "cancelled":
            break
        time.sleep(1)
    assert job.status == "cancelled"
    assert AuditLog.objects.filter(action="job.cancel", target_id=str(job.pk), actor_username="ops").exists()

    # The dashboard follows: the status message over the socket refreshes it; the job leaves the running list.
    expect(row).to_have_count(0, timeout=30000)
    expect(page.locator(f'[data-testid=recent-job][data-job-id="{job.pk}"]')).to_contain_text("Cancelled")
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / "04-dashboard-after-cancel.png"), full_page=True)
    admin.goto(f"{daphne_url}/admin/accounts/auditlog/")
    expect(admin.locator("#result_list")).to_contain_text("job.cancel")
    admin.screenshot(path=str(shots / "05-admin-audit-log.png"), full_page=True)
    admin_ctx.close()
    user_ctx.close()
