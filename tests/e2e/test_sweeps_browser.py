"""In Chromium: launch a two-variant learning-rate sweep from the training wizard's review step (under a limit of one
concurrent job, so the second variant shows as waiting for a slot), follow it on the sweep page until both variants
have trained (the loss curves overlaid, the best variant marked), and promote the best.
Screenshots in test-artifacts/training/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import sign_up
from tests.factories import make_ready_dataset

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture(scope="module")
def sweep_worker(test_db_name, daphne_url, tmp_path_factory):
    from tests.processes import server_env, start_celery_worker, stop

    proc, node = start_celery_worker(
        server_env(test_db_name, SITE_URL=daphne_url), tmp_path_factory.mktemp("sw") / "worker.log", queues="training"
    )
    yield node
    stop(proc)


def test_a_sweep_launched_from_the_wizard(page, daphne_url, sweep_worker, artifacts_dir):
    shots = artifacts_dir / "training"
    shots.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / name), full_page=True)

    sign_up(page, daphne_url, "sam")

    from accounts.models import User

    sam = User.objects.get(username="sam")
    # One job at a time (the worker runs one anyway): the second variant waits for the first's slot.
    User.objects.filter(pk=sam.pk).update(quota_overrides={"concurrent_jobs": 1})
    ds = make_ready_dataset(sam, name="tiny alpaca")
    page.goto(f"{daphne_url}/training/new?dataset={ds.pk}")
    next_button = page.get_by_role("button", name="Next")
    for _ in range(3):  # base model and dataset (preselected), method (SFT + LoRA)
        next_button.click()
    page.get_by_test_id("preset-quick-lora").click()
    page.get_by_role("radio", name="Max steps").click()
    page.locator("#hp-max_steps").fill("3")  # the first step warms up (lr 0): the curves part at step 3
    page.locator("#hp-max_length").fill("128")
    page.locator("#hp-per_device_train_batch_size").fill("2")
    next_button.click()
    expect(page.get_by_test_id("estimate")).to_have_attribute("data-fits", "true", timeout=20000)
    next_button.click()
    page.locator("#job-name").fill("lr sweep")

    page.get_by_test_id("sweep-toggle").check()
    page.get_by_test_id("sweep-values").fill("0.0001, 0.003")
    expect(page.get_by_test_id("sweep-count")).to_contain_text("2 variants")
    shot("sweep-01-wizard.png")
    page.get_by_test_id("launch-sweep").click()

    expect(page).to_have_url(re.compile(r"/training/sweeps/\d+"), timeout=20000)
    expect(page.get_by_test_id("sweep-variant")).to_have_count(2)
    expect(page.get_by_role("heading", name="lr sweep")).to_be_visible()
    waiting = page.locator("[data-testid=sweep-variant] [data-status=waiting]")
    expect(waiting).to_have_count(1)
    expect(waiting).to_have_text("Waiting for a slot")
    shot("sweep-02-waiting.png")
    # Polled while it runs: both variants train on the worker, then the best is marked.
    expect(page.get_by_test_id("sweep-card")).to_contain_text("Finished", timeout=400000)
    expect(page.get_by_test_id("best-badge")).to_have_count(1)
    expect(page.locator("[data-testid=sweep-variant][data-best]")).to_have_attribute("data-rank", "1")
    page.wait_for_function("() => Number(document.querySelector('[data-testid=sweep-chart]')?.dataset.points) >= 4")
    page.wait_for_timeout(300)
    shot("sweep-03-finished.png")

    page.get_by_test_id("promote-best").click()
    expect(page.get_by_test_id("promoted")).to_contain_text("lr sweep v1")
    shot("sweep-04-promoted.png")

    from training.models import Sweep

    sweep = Sweep.objects.get(pk=int(re.search(r"/training/sweeps/(\d+)", page.url).group(1)))
    assert sweep.jobs.filter(status="succeeded").count() == 2
    assert sweep.promoted_model is not None and sweep.promoted_model.job_id == sweep.best_job_id
