"""In Chromium: run the training wizard on a ready dataset, launch, watch the loss chart move on the job page,
reload and see the whole curve again (backfill by sequence number). Screenshots in test-artifacts/training/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import sign_up
from tests.factories import alpaca_rows, make_ready_dataset

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]


@pytest.fixture(scope="module")
def browser_training_worker(test_db_name, daphne_url, tmp_path_factory):
    from tests.processes import server_env, start_celery_worker, stop

    proc, node = start_celery_worker(
        server_env(test_db_name, SITE_URL=daphne_url), tmp_path_factory.mktemp("btw") / "worker.log", queues="training"
    )
    yield node
    stop(proc)


def test_wizard_launch_live_chart_and_reload(page, daphne_url, browser_training_worker, artifacts_dir, tmp_path):
    shots = artifacts_dir / "training"
    shots.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / name), full_page=True)

    sign_up(page, daphne_url, "tina")

    from accounts.models import User

    tina = User.objects.get(username="tina")
    ds = make_ready_dataset(tina, name="tiny alpaca")
    held = make_ready_dataset(tina, rows=alpaca_rows(6)[4:], name="held-out alpaca")
    page.goto(f"{daphne_url}/training/new?dataset={ds.pk}")
    next_button = page.get_by_role("button", name="Next")
    next_button.click()  # base model (preselected)
    # Dataset step: evaluate on the other Alpaca dataset, 2 prompts for the report.
    page.get_by_label("Evaluate on").select_option(str(held.pk))
    page.get_by_label("Evaluation prompts").fill("2")
    shot("01-dataset-evaluation.png")
    next_button.click()
    shot("01-method.png")
    next_button.click()
    page.get_by_test_id("preset-quick-lora").click()
    page.get_by_role("radio", name="Max steps").click()
    page.locator("#hp-max_steps").fill("6")
    page.locator("#hp-max_length").fill("128")
    page.locator("#hp-per_device_train_batch_size").fill("2")
    page.locator("#hp-learning_rate").fill("0.001")
    shot("02-hyperparameters.png")
    next_button.click()
    expect(page.get_by_test_id("estimate")).to_be_visible()
    expect(page.get_by_test_id("estimate")).to_have_attribute("data-fits", "true", timeout=20000)
    shot("03-estimate.png")
    next_button.click()
    shot("04-review.png")
    page.get_by_role("button", name="Launch training").click()

    expect(page).to_have_url(re.compile(r"/training/jobs/\d+"), timeout=20000)
    chart = page.get_by_test_id("loss-chart")
    expect(chart).to_be_visible()
    # The chart moves: points arrive over the websocket while the job trains.
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=loss-chart]')?.dataset.points || 0) >= 2", timeout=300000
    )
    shot("05-job-running.png")
    expect(page.get_by_test_id("job-status")).to_have_attribute("data-status", "succeeded", timeout=400000)
    job_id = int(re.search(r"/training/jobs/(\d+)", page.url).group(1))

    from training.models import TrainingJob

    expected = TrainingJob.objects.get(pk=job_id).metric_points.filter(kind="metric", loss__isnull=False).count()
    assert expected == 6
    expect(chart).to_have_attribute("data-points", str(expected))
    page.reload()
    expect(page.get_by_test_id("loss-chart")).to_have_attribute("data-points", str(expected), timeout=20000)
    page.wait_for_timeout(500)
    shot("06-job-succeeded-after-reload.png")

    # The model page: the evaluation report, base and fine-tuned answers side by side with their scores.
    model = TrainingJob.objects.get(pk=job_id).produced_model
    page.goto(f"{daphne_url}/models/{model.pk}")
    card = page.get_by_test_id("evaluation-card")
    expect(card.get_by_test_id("evaluation-rows").locator("li")).to_have_count(2, timeout=20000)
    expect(card.get_by_test_id("evaluation-summary")).to_contain_text("ROUGE-L F1")
    expect(card.get_by_test_id("evaluation-counts")).to_contain_text("2 prompts, 2 with a reference answer")
    first = alpaca_rows(6)[4]
    expect(card).to_contain_text(first["output"].strip()[:40])
    card.scroll_into_view_if_needed()
    card.screenshot(path=str(shots / "07-model-evaluation-report.png"))


KTO_ROWS = [
    {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "label": good}
    for q, a, good in [
        ("What is the capital of France?", "Paris.", True),
        ("What is the capital of France?", "I will not tell you.", False),
        ("Say hello politely.", "Hello, nice to meet you!", True),
        ("Say hello politely.", "Go away.", False),
        ("What is 2 + 2?", "4.", True),
        ("What is 2 + 2?", "Figure it out yourself.", False),
    ]
]


def test_kto_job_from_the_wizard(page, daphne_url, browser_training_worker, artifacts_dir):
    """A KTO dataset: the wizard picks KTO (SFT and DPO blocked with the reason), offers KTO's losses, launches, and
    the job trains to the end on the worker."""
    shots = artifacts_dir / "training"
    shots.mkdir(parents=True, exist_ok=True)
    sign_up(page, daphne_url, "kira")

    from accounts.models import User

    ds = make_ready_dataset(User.objects.get(username="kira"), rows=KTO_ROWS, fmt="kto", name="labelled answers")
    page.goto(f"{daphne_url}/training/new?dataset={ds.pk}")
    next_button = page.get_by_role("button", name="Next")
    next_button.click()
    next_button.click()
    expect(page.get_by_test_id("method-kto").locator("input")).to_be_checked()
    expect(page.get_by_test_id("method-sft").locator("input")).to_be_disabled()
    expect(page.get_by_test_id("method-sft")).to_contain_text("Keep only desirable rows")
    page.screenshot(path=str(shots / "07-kto-method.png"), full_page=True)
    next_button.click()
    page.get_by_test_id("preset-kto").click()
    page.get_by_role("radio", name="Max steps").click()
    page.locator("#hp-max_steps").fill("2")
    page.locator("#hp-max_length").fill("96")
    page.locator("#hp-per_device_train_batch_size").fill("2")
    page.locator("#hp-gradient_accumulation_steps").fill("1")
    assert page.locator("#hp-loss_type option").all_inner_texts() == ["default", "kto", "apo_zero_unpaired"]
    page.locator("#hp-loss_type").select_option("kto")
    page.screenshot(path=str(shots / "08-kto-hyperparameters.png"), full_page=True)
    next_button.click()
    expect(page.get_by_test_id("estimate")).to_have_attribute("data-fits", "true", timeout=20000)
    next_button.click()
    page.get_by_role("button", name="Launch training").click()
    expect(page).to_have_url(re.compile(r"/training/jobs/\d+"), timeout=20000)
    expect(page.get_by_test_id("job-status")).to_have_attribute("data-status", "succeeded", timeout=400000)
    page.screenshot(path=str(shots / "09-kto-job-succeeded.png"), full_page=True)

    from training.models import TrainingJob

    job = TrainingJob.objects.get(pk=int(re.search(r"/training/jobs/(\d+)", page.url).group(1)))
    assert job.method == "kto" and job.hyperparameters["loss_type"] == "kto"
    assert job.result["data"]["labels"]["desirable"] >= 1 and job.result["data"]["labels"]["undesirable"] >= 1


def test_reproducibility_clone_and_delete_of_a_finished_job(page, daphne_url, artifacts_dir):
    """A finished job's page: the reproducibility card (dataset hash, seed, package versions, the config as JSON);
    Clone opens the wizard with every choice of the job; Delete removes the job after a confirmation."""
    from accounts.models import User
    from training.models import TrainingJob

    sign_up(page, daphne_url, "remy")
    user = User.objects.get(username="remy")
    ds = make_ready_dataset(user, name="tiny alpaca")
    from models_app.models import BaseModel
    from tests.factories import TrainingJobFactory

    job = TrainingJobFactory(
        owner=user,
        dataset=ds,
        base_model=BaseModel.objects.ensure_embedded(),
        status="succeeded",
        name="repro run",
        dataset_sha256="ab" * 32,
        hyperparameters={"max_steps": 6, "learning_rate": 0.001, "seed": 7, "max_length": 128},
        versions={"torch": "2.13.0", "transformers": "5.1.0", "trl": "1.16.0"},
    )
    page.goto(f"{daphne_url}/training/jobs/{job.pk}")
    card = page.get_by_test_id("reproducibility-card")
    expect(card).to_contain_text("abababababababab")
    expect(card.get_by_test_id("reproducibility-facts")).to_contain_text("7")
    card.get_by_text("Package versions").click()
    expect(card.get_by_test_id("reproducibility-versions")).to_contain_text("torch")
    card.get_by_text("Full configuration").click()
    expect(card.get_by_test_id("reproducibility-config")).to_contain_text('"learning_rate": 0.001')
    card.scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts_dir / "training" / "10-reproducibility.png"), full_page=True)

    page.get_by_test_id("job-clone").click()
    expect(page).to_have_url(re.compile(rf"/training/new\?clone={job.pk}"))
    next_button = page.get_by_role("button", name="Next")
    for _ in range(3):
        next_button.click()
    expect(page.locator("#hp-max_steps")).to_have_value("6")
    expect(page.locator("#hp-learning_rate")).to_have_value("1e-3")
    for _ in range(2):
        next_button.click()
    expect(page.locator("#job-name")).to_have_value("repro run (copy)")

    page.goto(f"{daphne_url}/training/jobs/{job.pk}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("job-delete").click()
    expect(page).to_have_url(re.compile(r"/training$"))
    assert not TrainingJob.objects.filter(pk=job.pk).exists()
