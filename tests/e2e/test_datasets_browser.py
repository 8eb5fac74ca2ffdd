"""In Chromium against daphne and a real worker: drop a real dataset file on the upload page, watch it process,
read the validation report with its token-length histogram, page through the preview. Screenshots in
test-artifacts/datasets/."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

from tests.datasets_dir import DATASETS as SHARED  # noqa: E402
from tests.e2e.conftest import sign_up


def test_drag_and_drop_upload_then_report_and_preview(page, daphne_url, celery_worker_process, artifacts_dir):
    shots = artifacts_dir / "datasets"
    shots.mkdir(parents=True, exist_ok=True)

    def shot(name: str) -> None:
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / name), full_page=True)

    sign_up(page, daphne_url, "dora", "Data-Explorer-2026")

    page.get_by_role("link", name="Datasets", exact=True).click()  # not the dashboard tile
    expect(page).to_have_url(re.compile(r"/datasets$"))
    shot("01-empty-list.png")
    page.goto(f"{daphne_url}/datasets/upload")
    dropzone = page.get_by_test_id("dropzone")
    expect(dropzone).to_be_visible()
    content = (SHARED / "alpaca_en_demo.json").read_text()
    transfer = page.evaluate_handle(
        """(text) => { const dt = new DataTransfer();
             dt.items.add(new File([text], 'alpaca_en_demo.json', {type: 'application/json'})); return dt; }""",
        content,
    )
    dropzone.dispatch_event("dragenter", {"dataTransfer": transfer})
    dropzone.dispatch_event("drop", {"dataTransfer": transfer})
    expect(page.get_by_text("alpaca_en_demo.json").first).to_be_visible()
    shot("02-file-dropped.png")
    page.get_by_role("button", name=re.compile(r"^Upload")).last.click()

    # Processing runs in the Celery worker; the page follows it to the report.
    expect(page).to_have_url(re.compile(r"/datasets/\d+"), timeout=60000)
    expect(page.get_by_test_id("dataset-status")).to_contain_text(re.compile("ready", re.I), timeout=180000)
    report = page.get_by_test_id("validation-report")
    expect(report).to_be_visible()
    expect(report).to_contain_text("999")
    expect(page.get_by_test_id("verdict")).to_be_visible()
    expect(page.get_by_test_id("token-histogram")).to_be_visible()
    page.wait_for_timeout(500)  # let the chart animation settle for the screenshot
    shot("03-report.png")

    page.get_by_role("tab", name=re.compile("Preview")).click()
    rows = page.get_by_test_id("preview-row")
    expect(rows.first).to_be_visible(timeout=30000)
    expect(page.locator(".seg-trained").first).to_be_visible()
    shot("04-preview.png")

    from datasets_app.models import Dataset

    ds = Dataset.objects.get(owner__username="dora")
    assert ds.status == "ready" and ds.format == "alpaca" and ds.row_count == 999
